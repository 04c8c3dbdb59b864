//! Decode every row group of a local Parquet archive and drop the batches: what the
//! `hdfs` export costs before a single byte is sent (`scripts/bench.sh flight-floor`).
//!
//! ```sh
//! cargo run --release --example decode_archive -- /var/tmp/fletch-bench/parquet [THREADS]
//! ```
//!
//! Same reader and options as the sorted export (`src/sources/sorted_export.rs`): the
//! `parquet` crate's Arrow reader, default options, 8,192-row batches, one row group per
//! task, `THREADS` (default 2) row groups at once. Prints rows/s and the process's CPU.
#![allow(unsafe_code)] // getrusage(2) for CPU accounting has no safe wrapper in std

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: decode_archive DIR [THREADS]")?);
    let threads: usize = args.next().map(|t| t.parse()).transpose()?.unwrap_or(2);
    let mut units = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "parquet") {
            let groups = SerializedFileReader::new(File::open(&path)?)?.metadata().num_row_groups();
            units.extend((0..groups).map(|g| (path.clone(), g)));
        }
    }
    if units.is_empty() {
        return Err(format!("no .parquet files in {}", dir.display()).into());
    }
    let (units, next, rows) = (Arc::new(units), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (cpu0, start) = (cpu_seconds(), Instant::now());
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (units, next, rows) = (units.clone(), next.clone(), rows.clone());
            std::thread::spawn(move || -> Result<(), String> {
                while let Some((path, group)) = units.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let file = File::open(path).map_err(|e| e.to_string())?;
                    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                        .and_then(|b| b.with_row_groups(vec![*group]).with_batch_size(8192).build())
                        .map_err(|e| e.to_string())?;
                    for batch in reader {
                        rows.fetch_add(batch.map_err(|e| e.to_string())?.num_rows(), Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "decoder thread panicked")??;
    }
    let (secs, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let rows = rows.load(Ordering::Relaxed);
    println!(
        "decoded {rows} rows from {} row groups with {threads} threads in {secs:.2} s = {:.0} rows/s; CPU {cpu:.2} s ({:.2} s per 10 M rows)",
        units.len(),
        rows as f64 / secs,
        cpu * 1e7 / rows as f64
    );
    Ok(())
}
