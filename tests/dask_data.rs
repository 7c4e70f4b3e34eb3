//! Data stays in the Dask cluster: a large result stays on the worker that made it, the
//! tasks that read it take it there, and the coordinator receives only what it needs
//! (outcomes, the flow's output). Held results are released once nothing needs them; a
//! held result lost with a worker is computed again, and the run says how many were.
//!
//! Like `tests/dask.rs`, these need Python with Dask's client (see there).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{python, TestCluster};
use tideflow::dask::DaskExecutor;
use tideflow::event::Delivery;
use tideflow::prelude::*;
use tideflow::worker;

/// What each Dask worker runs: this binary, this test only.
#[test]
fn tideflow_worker() {
    worker::serve_if_worker();
}

/// Bytes in a chunk: far over what travels with an outcome (16 KiB).
const CHUNK: usize = 500_000;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn chunk(i: u64) -> Vec<u8> {
    vec![(i % 251) as u8; CHUNK]
}

#[task]
fn checksum(c: Vec<u8>) -> u64 {
    c.iter().map(|&b| u64::from(b)).sum()
}

/// A reduce over chunks: runs where they are.
#[task]
fn lengths(cs: Vec<Vec<u8>>) -> u64 {
    cs.iter().map(|c| c.len() as u64).sum()
}

/// A list too large to travel with its outcome: 9 bytes per element in the wire format.
#[task]
fn wide(n: u64) -> Vec<u64> {
    (0..n).map(|i| i * 1_000_000_007).collect()
}

#[task]
fn low(x: u64) -> u64 {
    x % 1000
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
fn combine(sums: u64, lows: u64, bytes: u64) -> u64 {
    sums + lows + bytes
}

/// Odd `i`: 30 KB (held on the cluster); even `i`: 8 bytes (travels with its outcome).
#[task]
fn sized(i: u64) -> Vec<u8> {
    vec![1; if i % 2 == 1 { 30_000 } else { 8 }]
}

/// 20 KB: held on the cluster.
#[task]
fn small_chunk(i: u64) -> Vec<u8> {
    vec![(i % 7) as u8; 20_000]
}

/// Takes 20 ms of a worker's time.
#[task(tags = ["slow"])]
fn slow_checksum(c: Vec<u8>) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    c.iter().map(|&b| u64::from(b)).sum()
}

flow! {
    fn stays(n: u64 = 24, m: u64 = 2000) -> u64 {
        let ns = numbers(n);
        let chunks = chunk.map(ns);
        let sums = checksum.map(chunks);
        let bytes = lengths(chunks);
        let big = wide(m);
        let lows = low.map(big);
        let s1 = total(sums);
        let s2 = total(lows);
        combine(s1, s2, bytes)
    }

    fn mixed(n: u64 = 9) -> u64 {
        let ns = numbers(n);
        let parts = sized.map(ns);
        lengths(parts)
    }

    fn big_output() -> Vec<u8> {
        chunk(3)
    }

    fn held_map(n: u64 = 200) -> u64 {
        let ns = numbers(n);
        let chunks = small_chunk.map(ns);
        let sums = slow_checksum.map(chunks);
        total(sums)
    }
}

/// How many tasks of tideflow's the Dask scheduler at `address` holds now, and which
/// (key, state, clients that want it).
fn tasks_on_scheduler(python: &std::path::Path, address: &str) -> (usize, String) {
    let (text, which) = ask_cluster(
        python,
        address,
        "ts = c.run_on_scheduler(lambda dask_scheduler: \
         [(str(k), t.state, [str(w) for w in t.who_wants]) for k, t in dask_scheduler.tasks.items() \
         if str(k).startswith('tideflow-')])\n\
         print(len(ts))\n\
         print(ts, file=sys.stderr)",
    );
    let n = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {text:?} {which}"));
    (n, which)
}

/// Runs `body` with `c`, a Dask client of the scheduler at `address` (and `os`, `sys`):
/// what it printed on its standard output and standard error.
fn ask_cluster(python: &std::path::Path, address: &str, body: &str) -> (String, String) {
    let script = format!(
        "import os, sys\nfrom distributed import Client\nc = Client(sys.argv[1], timeout='10s')\n{body}\nc.close()"
    );
    let out = Command::new(python)
        .args(["-c", &script, address])
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// How many of tideflow's results each Dask worker of the scheduler at `address` holds
/// now, by the worker's pid.
fn held_by_worker_pid(python: &std::path::Path, address: &str) -> Vec<(u32, usize)> {
    let (text, _) = ask_cluster(
        python,
        address,
        "pids = c.run(os.getpid)\n\
         held = c.has_what()\n\
         for addr, pid in pids.items():\n\
         \x20   print(pid, sum(1 for k in held.get(addr, ()) if str(k).startswith('tideflow-')))",
    );
    text.lines()
        .map(|line| {
            let (pid, n) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("not `pid count`: {line:?}"));
            (pid.parse().expect("a pid"), n.parse().expect("a count"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_stay_on_the_cluster_and_are_released_once_read() {
    let Some(python) = python() else {
        return;
    };
    let cluster = TestCluster::start(&python, 2);
    let address = &cluster.address;
    let dask = cluster.executor();
    let run = stays().executor(dask.clone()).run().await;

    let sums: u64 = (0..24u64).map(|i| (i % 251) * CHUNK as u64).sum();
    let lows: u64 = (0..2000u64).map(|i| i * 1_000_000_007 % 1000).sum();
    let bytes = 24 * CHUNK as u64;
    assert_eq!(run.output(), Ok(&(sums + lows + bytes)), "{}", run.summary());
    assert_eq!(run.task("lows").children().len(), 2000);
    assert!(run.task("lows").children().iter().all(|c| c.state().is_success()));

    // 12 MB of chunks and an 18 KB list were made, moved and read on the cluster; the
    // coordinator received outcomes only.
    let received = dask.bytes_received();
    eprintln!("the coordinator received {received} bytes for {bytes} bytes of chunks");
    assert!(received < bytes / 100, "received {received} bytes");
    // With the short runs in batches: the element-wise chain `chunk` → `checksum` and the
    // 2,000 `low`s over elements of a held list read their inputs where they are.
    let (batches, runs) = dask.batched();
    assert!(batches > 0 && runs >= 1000, "{batches} batches of {runs} runs");

    // Every held result was read by all its consumers during the run: Dask forgets them
    // (the releases go out within a second).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (held, which) = tasks_on_scheduler(&python, address);
        if held == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{held} task(s) still on the scheduler: {which}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reduce_over_held_and_returned_parts_is_built_on_the_cluster() {
    let Some(python) = python() else {
        return;
    };
    let dask = DaskExecutor::local(2).python(python);
    let run = mixed().executor(dask.clone()).run().await;
    // Four parts of 30 KB held on the cluster, five of 8 bytes that came back.
    assert_eq!(run.output(), Ok(&(4 * 30_000 + 5 * 8)), "{}", run.summary());
    assert!(dask.bytes_received() < 30_000, "{}", dask.bytes_received());
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_output_comes_back_whatever_its_size() {
    let Some(python) = python() else {
        return;
    };
    let dask = DaskExecutor::local(1).python(python);
    let run = big_output().executor(dask.clone()).run().await;
    assert_eq!(run.output(), Ok(&vec![3u8; CHUNK]), "{}", run.summary());
    assert!(dask.bytes_received() > CHUNK as u64);
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_result_lost_with_a_worker_is_computed_again_and_counted() {
    let Some(python) = python() else {
        return;
    };
    let mut cluster = TestCluster::start(&python, 2);
    // Two checksums at a time (the others wait in the coordinator, holding no worker):
    // the chunks, made at once, wait on both workers to be read.
    let dask = cluster.executor().tag_limit("slow", 2);
    let mut flow = held_map().executor(dask.clone());
    let mut events = flow.subscribe(Delivery::lossy(100_000));
    let handle = flow.start();
    // Every chunk is made quickly and held; the slow checksums read them one by one.
    common::children_succeeded(&mut events, Some("sums"), 30).await;
    // SIGKILL the Dask worker that holds the most results: the chunks it held and that
    // no checksum has read yet are lost.
    let held = held_by_worker_pid(&python, &cluster.address);
    let (pid, n) = held.iter().copied().max_by_key(|&(_, n)| n).expect("two workers");
    assert!(n > 0, "{held:?}");
    let index = cluster
        .workers
        .iter()
        .position(|w| w.0.id() == pid)
        .unwrap_or_else(|| panic!("no worker process of pid {pid}"));
    drop(cluster.workers.remove(index));
    let run = tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .expect("the run ends");
    let expected: u64 = (0..200u64).map(|i| (i % 7) * 20_000).sum();
    assert_eq!(run.output(), Ok(&expected), "{}", run.summary());
    let chunks = run.task("chunks");
    // A chunk computed again is the same attempt, run again by Dask.
    assert!(chunks
        .children()
        .iter()
        .all(|c| c.state().is_success() && c.attempts() == 1));
    // Only chunks still needed ran again: never one whose checksum was done.
    let again = run.recomputed();
    eprintln!("{again} chunk(s) computed again");
    assert!(again > 0 && again <= 170, "{again}");
    assert!(
        run.warnings()
            .iter()
            .any(|w| w.starts_with(&format!("{again} finished task run(s) ran again on the cluster"))),
        "{:?}",
        run.warnings()
    );
    dask.close();
}

/// The names of the worker plugins of tideflow's on the Dask workers at `address`.
fn plugins_on_workers(python: &std::path::Path, address: &str) -> Vec<String> {
    let (text, _) = ask_cluster(
        python,
        address,
        "names = c.run(lambda dask_worker: sorted(n for n in dask_worker.plugins if n.startswith('tideflow-')))\n\
         print('\\n'.join(sorted(set(n for ns in names.values() for n in ns))))",
    );
    text.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinators_sharing_a_cluster_each_have_their_worker_processes_until_they_close() {
    let Some(python) = python() else {
        return;
    };
    let cluster = TestCluster::start(&python, 2);
    let address = &cluster.address;
    let (a, b) = (cluster.executor(), cluster.executor());
    let (one, two) = tokio::join!(
        mixed().executor(a.clone()).start(),
        mixed().executor(b.clone()).start()
    );
    assert_eq!(one.output(), Ok(&(4 * 30_000 + 5 * 8)), "{}", one.summary());
    assert_eq!(two.output(), Ok(&(4 * 30_000 + 5 * 8)), "{}", two.summary());
    // Each bridge has a worker plugin (and so worker processes) of its own.
    assert_eq!(plugins_on_workers(&python, address).len(), 2);
    a.close();
    let deadline = Instant::now() + Duration::from_secs(20);
    while plugins_on_workers(&python, address).len() != 1 {
        assert!(Instant::now() < deadline, "the closed bridge's plugin stayed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The other coordinator goes on.
    let three = mixed().executor(b.clone()).run().await;
    assert_eq!(three.output(), Ok(&(4 * 30_000 + 5 * 8)), "{}", three.summary());
    b.close();
}
