//! Scale and memory: wall time and peak RSS of one flow run over N elements.
//!
//! ```text
//! cargo bench --bench scale                                   # map over 10^4, 10^5, 10^6
//! cargo bench --bench scale -- <workload>                     # that workload over 10^4, 10^5, 10^6
//! cargo bench --bench scale -- <workload> <N> [options]       # one run (or --repeat K runs)
//!
//! workload   map | chain | mapreduce   (see benches/workloads/mod.rs)
//! options    --sync | --async          add1 is the sync task (default) or the async one
//!            --executor local|sequential|dask-local:N   LocalExecutor::new() (default),
//!                                      SequentialExecutor, or DaskExecutor::local(N) (a local
//!                                      Dask cluster; needs TIDEFLOW_PYTHON or python3 with Dask;
//!                                      the first run of `--repeat` includes its start)
//!            --repeat K                run K times in this process, one line per run
//!            --persist DIR             persist every result in a result store in DIR
//!            --history DIR             record every run in the run history in DIR (the wall
//!                                      time includes writing it all)
//!            --json                    one JSON object per line instead of text
//! ```
//!
//! A series runs each N in a fresh process (this binary, re-executed), since peak RSS is a
//! per-process figure. Flows run on a multi-thread tokio runtime with 2 workers, driven by
//! `block_on` as `#[tokio::main]` drives a user's `main`. Each run checks the flow's output;
//! a wrong one panics (exit code 101). A bad command line exits with code 2.
//!
//! # Output (stable: `benches/compare/` reads `--json`)
//!
//! One line per run. With `--json`, one object per line with exactly these keys:
//!
//! | key                    | meaning                                                              |
//! |------------------------|----------------------------------------------------------------------|
//! | `workload`             | `"map"`, `"chain"` or `"mapreduce"`                                  |
//! | `n`                    | N, the number of elements (mapped children per map; tasks in a chain) |
//! | `body`                 | `"sync"` or `"async"`                                                |
//! | `executor`             | `"local"` or `"sequential"`                                          |
//! | `run`                  | 1 for the first run in this process, 2 for the next (`--repeat`)     |
//! | `task_runs`            | task runs in one flow run: map n + 1, chain n, mapreduce 2n + 2      |
//! | `build_s`              | seconds to build the graph (not in `wall_s`)                         |
//! | `wall_s`               | seconds for the flow run, the output check and dropping the run record |
//! | `us_per_task`          | `wall_s` / `task_runs`, in µs                                        |
//! | `floor_ns_per_element` | the same arithmetic in a plain loop, ns per element (best of several) |
//! | `ratio_to_floor`       | `us_per_task` in ns / `floor_ns_per_element`                         |
//! | `base_rss_mib`         | VmRSS before the graph is built, MiB                                 |
//! | `peak_rss_mib`         | VmHWM after the run: the process's peak RSS so far, MiB              |
//! | `rss_per_child_bytes`  | (`peak_rss_mib` − `base_rss_mib`) / `n`, in bytes                    |
//!
//! RSS figures come from `/proc/self/status` (Linux); elsewhere they are `null`.

use std::hint::black_box;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use tideflow::{Executor, LocalExecutor, SequentialExecutor};

mod workloads;

use workloads::{Body, Kind, Workload};

/// The N of a series.
const SERIES: [u64; 3] = [10_000, 100_000, 1_000_000];

const USAGE: &str = "usage: cargo bench --bench scale -- [<map|chain|mapreduce> [<N>]] \
                     [--sync|--async] [--executor local|sequential|dask-local:N] [--repeat K] [--persist DIR] [--history DIR] [--json]";

struct Args {
    kind: Option<Kind>,
    n: Option<u64>,
    body: Body,
    executor: String,
    repeat: u32,
    json: bool,
    persist: Option<std::path::PathBuf>,
    history: Option<std::path::PathBuf>,
    /// The options as given, passed on to each run of a series.
    options: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        kind: None,
        n: None,
        body: Body::Sync,
        executor: "local".to_owned(),
        repeat: 1,
        json: false,
        persist: None,
        history: None,
        options: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("`{name}` needs a value"));
        match arg.as_str() {
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => continue,
            "--sync" => parsed.body = Body::Sync,
            "--async" => parsed.body = Body::Async,
            "--work-us" => {
                let v = value("--work-us")?;
                let us: u64 = v
                    .parse()
                    .map_err(|_| format!("--work-us {v}: not a number of µs"))?;
                // Read by `add1_working` here and in the workers of a cluster (inherited).
                std::env::set_var("TIDEFLOW_BENCH_WORK_US", us.to_string());
                parsed.body = Body::Working;
            }
            "--json" => parsed.json = true,
            "--executor" => {
                let v = value("--executor")?;
                let dask = v
                    .strip_prefix("dask-local:")
                    .is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n > 0));
                if !(v == "local" || v == "sequential" || dask) {
                    return Err(format!(
                        "unknown executor `{v}`: `local`, `sequential` or `dask-local:N`"
                    ));
                }
                parsed.executor = v.clone();
                parsed.options.extend([arg, v]);
                continue;
            }
            "--history" => {
                let v = value("--history")?;
                parsed.history = Some(v.clone().into());
                parsed.options.extend([arg, v]);
                continue;
            }
            "--persist" => {
                let v = value("--persist")?;
                parsed.persist = Some(v.clone().into());
                parsed.options.extend([arg, v]);
                continue;
            }
            "--repeat" => {
                let v = value("--repeat")?;
                parsed.repeat = v
                    .parse()
                    .ok()
                    .filter(|&k| k > 0)
                    .ok_or_else(|| format!("`--repeat {v}`: a count of runs, at least 1"))?;
                parsed.options.extend([arg, v]);
                continue;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            word if parsed.kind.is_none() => {
                let kind = [Kind::Map, Kind::Chain, Kind::MapReduce]
                    .into_iter()
                    .find(|k| k.name() == word);
                parsed.kind =
                    Some(kind.ok_or_else(|| {
                        format!("unknown workload `{word}`: `map`, `chain` or `mapreduce`")
                    })?);
                continue;
            }
            number if parsed.n.is_none() => {
                parsed.n = Some(
                    number
                        .replace('_', "")
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("`{number}` is not a positive number of elements"))?,
                );
                continue;
            }
            extra => return Err(format!("unexpected argument `{extra}`")),
        }
        parsed.options.push(arg);
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    // On a Dask cluster, this program also serves the task attempts.
    tideflow::worker::serve_if_worker();
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let kind = args.kind.unwrap_or(Kind::Map);
    match args.n {
        Some(n) => {
            measure(kind, n, &args);
            ExitCode::SUCCESS
        }
        None => series(kind, &args),
    }
}

/// Runs each N of the series in a fresh process: peak RSS is per process.
fn series(kind: Kind, args: &Args) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this program to run the series: {e}");
            return ExitCode::FAILURE;
        }
    };
    for n in SERIES {
        let status = Command::new(&exe)
            .arg(kind.name())
            .arg(n.to_string())
            .args(&args.options)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("error: {kind} over {n} ended with {s}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: cannot run {kind} over {n}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

struct Measured {
    build: Duration,
    wall: Duration,
    base_kib: Option<u64>,
    peak_kib: Option<u64>,
}

fn measure(kind: Kind, n: u64, args: &Args) {
    let runtime = workloads::runtime();
    let executor: Executor = match args.executor.as_str() {
        "sequential" => SequentialExecutor.into(),
        other => match other
            .strip_prefix("dask-local:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => tideflow::dask::DaskExecutor::local(n).into(),
            None => LocalExecutor::new().into(),
        },
    };
    let history = args.history.as_deref().map(|dir| {
        tideflow::history::History::open_in(dir).unwrap_or_else(|e| panic!("cannot open the history: {e}"))
    });
    let mut runs = Vec::new();
    let mut task_runs = 0;
    for _ in 0..args.repeat {
        let base_kib = proc_status_kib("VmRSS");
        let start = Instant::now();
        let mut workload = Workload::new(kind, n, args.body, executor.clone());
        if let Some(dir) = &args.persist {
            workload = workload.persist_in(dir);
        }
        if let Some(history) = &history {
            workload = workload.record_in(history);
        }
        let build = start.elapsed();
        task_runs = workload.task_runs();
        let start = Instant::now();
        let id = runtime.block_on(workload.run());
        if let Some(history) = &history {
            assert!(history.wait(id), "the history did not write the run to its end");
        }
        let wall = start.elapsed();
        let peak_kib = proc_status_kib("VmHWM");
        drop(workload);
        runs.push(Measured {
            build,
            wall,
            base_kib,
            peak_kib,
        });
    }
    // After the runs, so the floor's vectors never count in the flow's peak.
    let floor_ns = floor_ns_per_element(kind, n);
    for (i, m) in runs.iter().enumerate() {
        report(kind, n, task_runs, args, i + 1, m, floor_ns);
    }
}

/// The best time per element of the floor over several runs (at least 3, about 50 ms).
fn floor_ns_per_element(kind: Kind, n: u64) -> f64 {
    let mut best = Duration::MAX;
    let begin = Instant::now();
    let mut runs = 0;
    while runs < 3 || (begin.elapsed() < Duration::from_millis(50) && runs < 10_000) {
        let start = Instant::now();
        workloads::floor(kind, black_box(n));
        best = best.min(start.elapsed());
        runs += 1;
    }
    best.as_secs_f64() * 1e9 / n as f64
}

fn report(kind: Kind, n: u64, task_runs: u64, args: &Args, run: usize, m: &Measured, floor_ns: f64) {
    let wall_s = m.wall.as_secs_f64();
    let us_per_task = wall_s * 1e6 / task_runs as f64;
    let ratio = us_per_task * 1e3 / floor_ns;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let base_mib = m.base_kib.map(mib);
    let peak_mib = m.peak_kib.map(mib);
    let per_child = match (m.base_kib, m.peak_kib) {
        (Some(base), Some(peak)) => Some(peak.saturating_sub(base) as f64 * 1024.0 / n as f64),
        _ => None,
    };
    if args.json {
        let line = serde_json::json!({
            "workload": kind.name(),
            "n": n,
            "body": args.body.name(),
            "executor": args.executor,
            "run": run,
            "task_runs": task_runs,
            "build_s": m.build.as_secs_f64(),
            "wall_s": wall_s,
            "us_per_task": us_per_task,
            "floor_ns_per_element": floor_ns,
            "ratio_to_floor": ratio,
            "base_rss_mib": base_mib,
            "peak_rss_mib": peak_mib,
            "rss_per_child_bytes": per_child,
        });
        println!("{line}");
    } else {
        let or_na = |v: Option<f64>, digits: usize| v.map_or("n/a".to_owned(), |v| format!("{v:.digits$}"));
        println!(
            "{:<9} n={n:<8} {:<5} {:<10} wall {wall_s:>7.3} s  {us_per_task:>6.3} µs/task  \
             floor {floor_ns:>5.2} ns/elem  ×{ratio:<6.0}  peak RSS {:>7} MiB (base {} MiB)  {:>5} B/child",
            kind.name(),
            args.body.name(),
            args.executor,
            or_na(peak_mib, 1),
            or_na(base_mib, 1),
            or_na(per_child, 0),
        );
    }
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in KiB; `None` off Linux.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
