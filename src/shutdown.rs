//! Stopping without failing anyone, so replicas can be stopped one at a time behind a load
//! balancer (a rolling update, a scale-down, a node drain).
//!
//! On SIGTERM (or SIGINT) the process, in this order:
//! 1. answers 503 on `/ready` (a balancer's health check takes the replica out), and
//!    serves as before for `http.shutdown_delay_ms` (0 by default) so the balancer can
//!    notice;
//! 2. stops accepting connections on the HTTP and Flight ports: a balancer's new
//!    connections are refused and go to another replica;
//! 3. lets requests and streams under way finish — responses on kept-alive HTTP
//!    connections then say `Connection: close`, Flight connections get an HTTP/2 GOAWAY;
//! 4. returns once nothing runs, or when `http.shutdown_grace_ms` has passed (what still
//!    runs then is cut), and the process exits 0.
//!
//! A second signal stops at once.

use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::server::{Running, StartError};

/// Serve until SIGTERM or SIGINT, then drain as described above.
pub async fn serve_until_signal(running: Running) -> Result<(), StartError> {
    let mut term = signal(SignalKind::terminate()).map_err(StartError::Run)?;
    let mut int = signal(SignalKind::interrupt()).map_err(StartError::Run)?;
    let Running { server, drain, grace, delay, flight, metrics, .. } = running;
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    let name = tokio::select! {
        result = &mut server => return result.map_err(StartError::Run),
        name = next(&mut term, &mut int) => name,
    };
    drain.begin();
    metrics.draining.store(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        signal = name,
        delay_ms = delay.as_millis() as u64,
        grace_ms = grace.as_millis() as u64,
        "draining: /ready answers 503; after the delay no new connections; work under way may finish"
    );
    if !delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            name = next(&mut term, &mut int) => {
                tracing::warn!(signal = name, "signalled again: stopping now");
                return Ok(());
            }
        }
    }
    let began = Instant::now();
    // Sends the stop now; the server future below resolves once its workers are done.
    let stopping = handle.stop(true);
    let http = async {
        let (result, ()) = futures::future::join(&mut server, stopping).await;
        result
    };
    let flight = async {
        if let Some(f) = flight {
            f.shutdown(grace).await;
        }
    };
    // actix (in whole seconds, checked once a second) and Flight each stop by the grace
    // period on their own; this later bound only guards against a part that does not.
    let bound = grace + Duration::from_secs(2);
    tokio::select! {
        (result, ()) = futures::future::join(http, flight) => {
            result.map_err(StartError::Run)?;
            let elapsed_ms = began.elapsed().as_millis() as u64;
            // actix and Flight end what still runs at the grace period and report success
            // either way; only the clock tells the two apart.
            if began.elapsed() >= grace {
                tracing::warn!(elapsed_ms, "grace period reached: connections still open then were closed; exiting");
            } else {
                tracing::info!(elapsed_ms, "drained; exiting");
            }
        }
        name = next(&mut term, &mut int) => {
            tracing::warn!(signal = name, "signalled again: stopping now, cutting what still runs");
        }
        () = tokio::time::sleep(bound) => {
            tracing::warn!("grace period over: cutting what still runs");
        }
    }
    Ok(())
}

/// The first SIGTERM or SIGINT (for processes with nothing to drain).
pub async fn signalled() -> &'static str {
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => next(&mut term, &mut int).await,
        _ => std::future::pending().await,
    }
}

async fn next(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
