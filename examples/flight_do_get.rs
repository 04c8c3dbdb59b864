//! A Flight client in Rust that times one `do_get` and drops the batches as they arrive:
//! the second client of `scripts/bench.sh flight-floor`, beside pyarrow.
//!
//! ```sh
//! cargo run --release --example flight_do_get -- http://127.0.0.1:18081 \
//!     '{"source": "hdfs", "kind": "export"}'
//! ```
//!
//! Prints rows, IPC messages, rows/s and this process's own CPU (user + system), because
//! client and server share the machine's cores. Windows and the largest HTTP/2 frame are
//! set to what gRPC C++ (pyarrow) advertises, 4 MiB, so the server sends to both clients
//! alike (with hyper's default 16 KiB frames it makes many more, smaller writes).
#![allow(unsafe_code)] // getrusage(2) for CPU accounting has no safe wrapper in std

use std::time::Instant;

use arrow_flight::{FlightClient, Ticket};
use futures::StreamExt;

/// Stream and connection windows and the largest frame this client accepts.
const WINDOW: u32 = 4 * 1024 * 1024;

fn cpu_seconds() -> (f64, f64) {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "http://127.0.0.1:18081".into());
    let ticket = args.next().unwrap_or_else(|| r#"{"source": "hdfs", "kind": "export"}"#.into());
    let channel = tonic::transport::Endpoint::from_shared(addr)?
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(WINDOW)
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = FlightClient::new(channel);
    let (u0, s0) = cpu_seconds();
    let start = Instant::now();
    let mut stream = client.do_get(Ticket::new(ticket)).await?;
    let (mut rows, mut batches) = (0usize, 0usize);
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows();
        batches += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let (u1, s1) = cpu_seconds();
    println!(
        "{rows} rows, {batches} batches in {secs:.2} s = {:.0} rows/s; client CPU user {:.2} s sys {:.2} s",
        rows as f64 / secs,
        u1 - u0,
        s1 - s0
    );
    Ok(())
}
