//! Noticing that a client has gone while its request is still being worked on. actix-web
//! keeps polling a handler after the peer closes its end (an HTTP/1 half-close is legal),
//! so a statement computing before its first row would run to its time budget for nobody.
//! Each connection keeps a duplicate of its socket; a handler that waits long races its
//! work against the socket reporting end-of-stream, and dropping the work cancels it at
//! the source.

use std::future::Future;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;

use crate::error::QueryError;

/// How often a waiting handler looks at its socket.
const POLL: Duration = Duration::from_millis(100);

/// The connection's socket, shared with its handlers.
#[derive(Clone)]
pub struct PeerSocket(Arc<std::net::TcpStream>);

/// For `HttpServer::on_connect`: remember the connection's socket.
pub fn remember(conn: &dyn std::any::Any, ext: &mut Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
            ext.insert(PeerSocket(Arc::new(std::net::TcpStream::from(fd))));
        }
    }
}

/// `work`, unless the client closes its connection first (then `work` is dropped).
pub async fn unless_client_leaves<T>(
    req: &HttpRequest,
    work: impl Future<Output = Result<T, QueryError>>,
) -> Result<T, QueryError> {
    let Some(socket) = req.conn_data::<PeerSocket>().cloned() else { return work.await };
    tokio::select! {
        r = work => r,
        () = closed(socket) => {
            tracing::info!("client closed the connection while its request ran; stopped it");
            Err(QueryError::Cancelled("the client"))
        }
    }
}

/// Resolves once the peer has closed its end. Pipelined bytes waiting on the socket say
/// nothing either way, so this then keeps waiting (the time budget still applies).
async fn closed(socket: PeerSocket) {
    let mut byte = [0u8; 1];
    loop {
        tokio::time::sleep(POLL).await;
        // The socket is non-blocking (actix set it so): `peek` never waits.
        match socket.0.peek(&mut byte) {
            Ok(0) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(_) => {}
            Err(_) => return, // reset or broken: gone too
        }
    }
}
