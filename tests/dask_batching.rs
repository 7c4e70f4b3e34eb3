//! Short mapped task runs on Dask go in batches (one Dask task runs several of them), and
//! each keeps its own states, attempts, retries and result: a failed run is retried
//! alone, and a batch lost with a killed worker runs again only what it had not finished.
//!
//! Every run of `mark` appends its element to a file of the run's folder, so the tests
//! see how many times each element really ran, whatever the workers reported.
//!
//! Like `tests/dask.rs`, it needs Python with Dask's client (see there).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{python, TestCluster};
use tideflow::dask::DaskExecutor;
use tideflow::event::Delivery;
use tideflow::prelude::*;

/// What each Dask worker runs: this binary.
#[test]
fn tideflow_worker() {
    tideflow::worker::serve_if_worker();
}

fn numbers_to(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    numbers_to(n)
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

/// Notes that it ran (in `runs` of the folder the flow's `dir` names), sleeps `ms`, then
/// returns `x`; fails every attempt of element 17 and the first attempt of element 23.
#[task(max_retries = 1, retry_delay = "10ms")]
fn mark(x: u64, ctx: &TaskContext) -> Result<u64, TaskError> {
    use std::io::Write;
    let dir: String = ctx.param("dir").ok_or_else(|| TaskError::fail("no dir"))?;
    let ms: u64 = ctx.param("ms").unwrap_or(0);
    let mut runs = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(Path::new(&dir).join("runs"))
        .map_err(|e| TaskError::fail(e.to_string()))?;
    runs.write_all(format!("{x}\n").as_bytes())
        .map_err(|e| TaskError::fail(e.to_string()))?;
    std::thread::sleep(Duration::from_millis(ms));
    tracing::info!(x, "marked");
    match (x, ctx.attempt()) {
        (17, _) => Err(TaskError::fail("17 always fails")),
        (23, 1) => Err(TaskError::fail("23 fails once")),
        _ => Ok(x),
    }
}

flow! {
    /// `mark` over 0..n, then their sum (which element 17 fails).
    fn marks(n: u64 = 60, dir: String = String::new(), ms: u64 = 0) -> u64 {
        let xs = numbers(n);
        let ys = mark.map(xs);
        total(ys)
    }
}

/// The run failed as `mark` makes it fail: element 17 alone, and the sum after it.
fn failed_by_17(run: &FlowRun<u64>) {
    let failed: Vec<String> = run.failed_tasks().into_iter().map(|(name, _)| name).collect();
    assert_eq!(failed, ["ys[17]", "total"], "{}", run.summary());
}

/// Notes that it ran, like `mark`; element 30 sleeps past the task's timeout.
#[task(timeout = "500ms")]
fn doze(x: u64, ctx: &TaskContext) -> Result<u64, TaskError> {
    use std::io::Write;
    let dir: String = ctx.param("dir").ok_or_else(|| TaskError::fail("no dir"))?;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(Path::new(&dir).join("runs"))
        .and_then(|mut f| f.write_all(format!("{x}\n").as_bytes()))
        .map_err(|e| TaskError::fail(e.to_string()))?;
    if x == 30 {
        std::thread::sleep(Duration::from_secs(3));
    }
    Ok(x)
}

flow! {
    /// `doze` over 0..n.
    fn dozes(n: u64 = 40, dir: String = String::new()) -> u64 {
        let xs = numbers(n);
        let ys = doze.map(xs);
        total(ys)
    }
}

/// 100 KB made on a worker: too large to travel with its outcome, so it stays there.
#[task]
fn block(x: u64) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![(x % 251) as u8; 100_000])
}

/// What a block weighs, read where the block is.
#[task]
fn weigh(b: serde_bytes::ByteBuf) -> u64 {
    b.iter().map(|&v| u64::from(v)).sum()
}

flow! {
    /// `block` over 0..n, each weighed: an element-wise chain of values the cluster keeps.
    fn weighed(n: u64 = 200) -> u64 {
        let xs = numbers(n);
        let blocks = block.map(xs);
        let weights = weigh.map(blocks);
        total(weights)
    }
}

/// Each run on a cluster alone.
#[task(batch = false)]
fn alone(x: u64) -> u64 {
    x + 1
}

/// At most 4 runs per Dask task.
#[task(batch = 4)]
fn fours(x: u64) -> u64 {
    x + 1
}

flow! {
    /// `alone` over 0..n.
    fn alones(n: u64 = 40) -> u64 {
        let xs = numbers(n);
        let ys = alone.map(xs);
        total(ys)
    }
}

flow! {
    /// `fours` over 0..n.
    fn in_fours(n: u64 = 40) -> u64 {
        let xs = numbers(n);
        let ys = fours.map(xs);
        total(ys)
    }
}

/// How many times each element ran.
fn runs(dir: &Path) -> BTreeMap<u64, u32> {
    let text = std::fs::read_to_string(dir.join("runs")).unwrap_or_default();
    let mut runs = BTreeMap::new();
    for line in text.lines() {
        *runs.entry(line.parse::<u64>().expect("an element")).or_insert(0) += 1;
    }
    runs
}

fn marks_in(dir: &Path, n: u64, ms: u64) -> Flow<u64> {
    marks()
        .with_param("n", n)
        .and_then(|f| f.with_param("dir", dir.display().to_string()))
        .and_then(|f| f.with_param("ms", ms))
        .expect("parameters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_runs_share_dask_tasks_and_each_keeps_its_own_states_and_retries() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a folder");
    let dask = DaskExecutor::local(2).python(python);
    let run = marks_in(dir.path(), 60, 0).executor(dask.clone()).run().await;

    // Most of the 60 runs went in batches (the first ones go alone, to be timed).
    let (batches, batched) = dask.batched();
    assert!(
        batches >= 2 && batched >= 40,
        "{batches} batches of {batched} runs"
    );

    let ys = run.task("ys");
    assert_eq!(ys.children().len(), 60);
    for child in ys.children() {
        let i = child.map_index();
        match i {
            17 => {
                assert!(child.state().is_failed(), "{i}: {:?}", child.state());
                assert!(
                    child.state().to_string().contains("17 always fails"),
                    "{:?}",
                    child.state()
                );
                assert_eq!(child.attempts(), 2, "17 is retried once, alone");
            }
            23 => {
                assert!(child.state().is_success(), "{i}: {:?}", child.state());
                assert_eq!(child.attempts(), 2, "23 succeeds on its retry");
            }
            _ => {
                assert!(child.state().is_success(), "{i}: {:?}", child.state());
                assert_eq!(child.attempts(), 1, "{i} ran once");
            }
        }
    }
    // What ran, really: every element once, and the failed attempts' elements once more.
    let mut want: BTreeMap<u64, u32> = numbers_to(60).into_iter().map(|x| (x, 1)).collect();
    want.insert(17, 2);
    want.insert(23, 2);
    assert_eq!(runs(dir.path()), want);
    failed_by_17(&run);
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_off_sends_every_run_alone() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a folder");
    let dask = DaskExecutor::local(1).python(python).batch_size(1);
    let run = marks_in(dir.path(), 30, 0).executor(dask.clone()).run().await;
    assert_eq!(dask.batched(), (0, 0));
    assert_eq!(run.task("ys").children().len(), 30);
    failed_by_17(&run);
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_lost_with_a_killed_worker_runs_again_only_what_it_had_not_finished() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a folder");
    let mut cluster = TestCluster::start(&python, 2);
    // Runs of 100 ms, in batches of about two seconds.
    let dask = cluster.executor().batch_target(Duration::from_secs(2));
    let mut flow = marks_in(dir.path(), 80, 100).executor(dask.clone());
    let mut events = flow.subscribe(Delivery::lossy(100_000));
    let handle = flow.start();
    // The first runs go alone; then batches. Mid-way through them, SIGKILL a worker.
    common::children_succeeded(&mut events, Some("ys"), 16).await;
    drop(cluster.workers.remove(0));
    let run = tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .expect("the run ends");
    assert!(dask.batched().0 >= 2, "{:?}", dask.batched());
    failed_by_17(&run);
    let ys = run.task("ys");
    assert!(ys
        .children()
        .iter()
        .all(|c| c.attempts() == 1 || [17, 23].contains(&c.map_index())));
    // Every element ran; of those that ran on the killed worker, only the one it was
    // running when it died ran again.
    let runs = runs(dir.path());
    let want = |x: u64| if x == 17 || x == 23 { 2 } else { 1 };
    assert_eq!(runs.len(), 80, "{runs:?}");
    let again: Vec<u64> = runs
        .iter()
        .filter(|(x, n)| **n > want(**x))
        .map(|(x, _)| *x)
        .collect();
    assert!(again.len() <= 1, "ran again: {again:?}");
    assert!(runs.iter().all(|(x, n)| *n <= want(*x) + 1), "{runs:?}");
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_ends_alone_and_the_rest_of_its_batch_runs_on() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a folder");
    let dask = DaskExecutor::local(1).python(python);
    let run = dozes()
        .with_param("dir", dir.path().display().to_string())
        .expect("a folder")
        .executor(dask.clone())
        .run()
        .await;
    assert!(dask.batched().0 >= 1, "{:?}", dask.batched());
    let failed: Vec<String> = run.failed_tasks().into_iter().map(|(name, _)| name).collect();
    assert_eq!(failed, ["ys[30]", "total"], "{}", run.summary());
    let ys = run.task("ys");
    let late = &ys.children()[30];
    assert!(
        late.state().to_string().contains("timed out"),
        "{:?}",
        late.state()
    );
    assert!(ys.children().iter().all(|c| c.attempts() == 1));
    // The worker process stopped with the run past its timeout; the runs after it in its
    // batch ran on a new one, once each.
    let want: BTreeMap<u64, u32> = numbers_to(40).into_iter().map(|x| (x, 1)).collect();
    assert_eq!(runs(dir.path()), want);
    dask.close();
}

/// How many values the Dask workers of the scheduler at `address` fetched from each other.
fn transfers(python: &Path, address: &str) -> u64 {
    let script = "import sys\nfrom distributed import Client\nc = Client(sys.argv[1], timeout='10s')\n\
                  print(sum(c.run(lambda dask_worker: dask_worker.state.transfer_incoming_count_total).values()))\n\
                  c.close()";
    let out = std::process::Command::new(python)
        .args(["-c", script, address])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_an_element_wise_chain_reads_its_inputs_on_the_worker_that_made_them() {
    let Some(python) = python() else {
        return;
    };
    let cluster = TestCluster::start(&python, 2);
    let dask = cluster.executor();
    let run = weighed().executor(dask.clone()).run().await;
    let want: u64 = (0..200u64).map(|x| (x % 251) * 100_000).sum();
    assert_eq!(run.output(), Ok(&want), "{}", run.summary());
    let (batches, runs) = dask.batched();
    assert!(batches >= 4 && runs >= 100, "{batches} batches of {runs} runs");
    // 200 blocks of 100 KB stayed on the workers that made them, and the `weigh` batches
    // ran there: hardly any block moved from one worker to the other, and none came here.
    let moved = transfers(&python, &cluster.address);
    eprintln!("{moved} values moved between the workers; {batches} batches of {runs} runs");
    assert!(moved <= 20, "{moved} values moved between the workers");
    assert!(
        dask.bytes_received() < 200 * 100_000 / 100,
        "{}",
        dask.bytes_received()
    );
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_can_turn_batching_off_or_bound_its_batches() {
    let Some(python) = python() else {
        return;
    };
    let want = (1..=40u64).sum::<u64>();
    let dask = DaskExecutor::local(1).python(python);
    // Twice each, so that the second run starts with the time the first measured.
    for _ in 0..2 {
        let run = alones().executor(dask.clone()).run().await;
        assert_eq!(run.output(), Ok(&want), "{}", run.summary());
    }
    assert_eq!(dask.batched(), (0, 0), "`batch = false`: every run alone");
    for _ in 0..2 {
        let run = in_fours().executor(dask.clone()).run().await;
        assert_eq!(run.output(), Ok(&want), "{}", run.summary());
    }
    let (batches, runs) = dask.batched();
    assert!(
        batches >= 15 && runs <= 4 * batches,
        "{batches} batches of {runs} runs"
    );
    dask.close();
}
