//! The data workload on a Dask cluster: chunks of 10 MB made on the workers, each
//! measured where it is, then the measures summed. It reports how many bytes the
//! coordinator (this program) received, against the bytes of data the flow made.
//!
//! ```text
//! cargo bench --bench data                      # 50 chunks, a local cluster of 2 workers
//! cargo bench --bench data -- <N> [--repeat K] [--json]
//! ```
//!
//! One line per run (`--repeat K` runs K times in this process; the first run starts the
//! cluster). With `--json`, one object per line: `workload` (`"data"`), `n`, `run`,
//! `wall_s`, `bytes_received` (by the coordinator, during that run), `data_bytes` (made
//! on the cluster), `output`. The flow's output is checked; a wrong one exits 1.
//!
//! `benches/compare/` runs it beside raw Dask doing the same with `client.map`.

use std::process::ExitCode;
use std::time::Instant;

use serde_bytes::ByteBuf;
use tideflow::dask::DaskExecutor;
use tideflow::prelude::*;

/// Bytes in a chunk.
const CHUNK: usize = 10_000_000;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

/// A chunk of 10 MB, as bytes (`serde_bytes`: MessagePack `bin` in the wire format, as
/// Python's `bytes` are to Dask).
#[task]
fn chunk(i: u64) -> ByteBuf {
    ByteBuf::from(vec![(i % 100) as u8 + 1; CHUNK])
}

/// A trivial measure of a chunk: its length times its first byte.
#[task]
fn measure(c: ByteBuf) -> u64 {
    c.len() as u64 * c.first().map_or(0, |&b| u64::from(b))
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

flow! {
    /// Chunks made, measured and summed on the cluster.
    fn data(n: u64 = 50) -> u64 {
        let ids = numbers(n);
        let chunks = chunk.map(ids);
        let sizes = measure.map(chunks);
        total(sizes)
    }
}

const USAGE: &str = "usage: cargo bench --bench data -- [<N>] [--repeat K] [--json]";

fn main() -> ExitCode {
    // On the Dask cluster, this program also serves the task attempts.
    tideflow::worker::serve_if_worker();
    let mut n = 50u64;
    let mut repeat = 1usize;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--json" => json = true,
            "--repeat" => match args.next().and_then(|v| v.parse().ok()).filter(|&k| k > 0) {
                Some(k) => repeat = k,
                None => {
                    eprintln!("error: `--repeat` takes a count of runs, at least 1\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            other => match other.parse() {
                Ok(v) => n = v,
                Err(_) => {
                    eprintln!("error: unknown argument `{other}`\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dask = DaskExecutor::local(2);
    let expected: u64 = (0..n).map(|i| (i % 100 + 1) * CHUNK as u64).sum();
    for run in 1..=repeat {
        let before = dask.bytes_received();
        let start = Instant::now();
        let flow = match data().with_param("n", n) {
            Ok(f) => f.executor(dask.clone()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = runtime.block_on(flow.run());
        let wall_s = start.elapsed().as_secs_f64();
        let received = dask.bytes_received() - before;
        match result.output() {
            Ok(&got) if got == expected => {}
            other => {
                eprintln!(
                    "error: the flow gave {other:?}, expected {expected}\n{}",
                    result.summary()
                );
                return ExitCode::FAILURE;
            }
        }
        let data_bytes = n * CHUNK as u64;
        if json {
            let line = serde_json::json!({
                "workload": "data",
                "n": n,
                "run": run,
                "wall_s": wall_s,
                "bytes_received": received,
                "data_bytes": data_bytes,
                "output": expected,
            });
            println!("{line}");
        } else {
            println!(
                "data n={n} run {run}: wall {wall_s:.3} s, the coordinator received {received} bytes \
                 for {data_bytes} bytes of data ({:.4}%)",
                received as f64 * 100.0 / data_bytes as f64
            );
        }
    }
    dask.close();
    ExitCode::SUCCESS
}
