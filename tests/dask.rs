//! Task attempts on a real Dask cluster (a scheduler and two worker processes on
//! 127.0.0.1), through the bridge: each Dask worker runs this test binary as a tideflow
//! worker process.
//!
//! They need Python with Dask's client: `TIDEFLOW_PYTHON`, else the venv `.ci/dask-venv`
//! makes in `target/dask-venv`. Without one they say so loudly and pass, except under CI
//! (`CI` set), where they fail.

mod common;

use common::python;
use std::time::SystemTime;

use tideflow::dask::{Cluster, DaskBridge, DaskError, DaskExecutor, WorkerProgram};
use tideflow::prelude::*;
use tideflow::task_def::Task;
use tideflow::wire::{WireAttempt, WireContext, WireEnd, WireInput};
use tideflow::worker::{self, Reply};
use tideflow::{FlowRunId, TaskRunId};

/// What each Dask worker runs: this binary, this test only.
#[test]
fn tideflow_worker() {
    worker::serve_if_worker();
}

#[task]
fn add1(x: u64) -> u64 {
    x + 1
}

#[task]
fn pid(_x: u64) -> u64 {
    u64::from(std::process::id())
}

#[task]
fn overrun(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_secs(30));
    x
}

#[task]
fn die(_x: u64) -> u64 {
    std::process::abort()
}

/// Sleeps `ms` milliseconds and returns them; aborts its process for `u64::MAX`.
#[task]
fn nap(ms: u64) -> u64 {
    if ms == u64::MAX {
        std::process::abort()
    }
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

/// Kills its own worker process on its first attempt.
#[task(max_retries = 1, retry_delay = "10ms")]
fn dies_once(x: u64, ctx: &TaskContext) -> u64 {
    if ctx.attempt() == 1 {
        std::process::abort();
    }
    x
}

/// Runs in the coordinator's process (its values cannot cross); fails anywhere else.
#[task(local)]
fn here(x: u64) -> Result<u64, TaskError> {
    if worker::is_worker() {
        return Err(TaskError::fail("a local task ran in a worker process"));
    }
    Ok(x)
}

/// A task of a local flow that runs a flow of its own on a Dask cluster.
#[task]
async fn sum_on_a_cluster(n: u64, python: String) -> Result<u64, TaskError> {
    let run = on_the_cluster()
        .with_param("n", n)?
        .executor(DaskExecutor::local(1).python(python))
        .run()
        .await;
    Ok(run.into_output()?)
}

flow! {
    fn calls_a_cluster(n: u64 = 4, python: String = String::new()) -> u64 {
        let sum = sum_on_a_cluster(n, python);
        add1(sum)
    }

    fn on_the_cluster(n: u64 = 20) -> u64 {
        let xs = numbers(n);
        let ys = add1.map(xs);
        let sum = total(ys);
        here(sum)
    }

    fn survives_a_dead_worker_process() -> u64 {
        dies_once(7)
    }
}

fn attempt<Tk: Task>(ticket: u32, x: u64) -> WireAttempt {
    WireAttempt {
        ticket,
        task_key: Tk::DEF.key.to_owned(),
        inputs: vec![WireInput::Encoded(rmp_serde::to_vec(&x).expect("packs"))],
        context: WireContext {
            task_run_id: TaskRunId {
                flow_run: FlowRunId::new(),
                node: 0,
                map_index: Some(ticket),
            },
            flow: "dask_tests".into(),
            task: Tk::DEF.name.into(),
            binding: Tk::DEF.name.into(),
            attempt: 1,
            scheduled_start: SystemTime::now(),
            parameters: serde_json::Map::new(),
        },
        timeout: None,
        result_here: true,
        limits: Vec::new(),
    }
}

fn value(reply: Reply) -> (u32, u64) {
    match reply {
        Reply::Ended(ticket, WireEnd::Returned(bytes)) => {
            (ticket, rmp_serde::from_slice(&bytes).expect("a u64"))
        }
        other => panic!("not a value: {other:?}"),
    }
}

fn start(program: WorkerProgram) -> Option<DaskBridge> {
    let python = python()?;
    Some(DaskBridge::start_with(&python, &Cluster::Local(2), &program).expect("a local Dask cluster starts"))
}

#[test]
fn attempts_run_on_dask_workers_in_long_lived_tideflow_worker_processes() {
    let Some(mut bridge) = start(WorkerProgram::this_program().expect("this binary")) else {
        return;
    };
    assert_eq!(bridge.workers(), 2);
    assert!(
        bridge.scheduler().starts_with("tcp://127.0.0.1:"),
        "{}",
        bridge.scheduler()
    );
    for t in 0..20 {
        bridge.send(&attempt::<add1>(t, u64::from(t))).expect("sent");
    }
    let mut got: Vec<(u32, u64)> = (0..20).map(|_| value(bridge.recv().expect("a reply"))).collect();
    got.sort_unstable();
    assert_eq!(got, (0..20).map(|t| (t, u64::from(t) + 1)).collect::<Vec<_>>());

    // One tideflow process per Dask worker, reused by every attempt: at most two pids.
    for t in 0..20 {
        bridge.send(&attempt::<pid>(100 + t, 0)).expect("sent");
    }
    let mut pids: Vec<u64> = (0..20)
        .map(|_| value(bridge.recv().expect("a reply")).1)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    assert!(!pids.is_empty() && pids.len() <= 2, "{pids:?}");
    assert!(!pids.contains(&u64::from(std::process::id())));
    assert!(bridge.close().expect("it stops").success());
}

#[test]
fn an_uploaded_program_gets_its_exec_bit_back_and_a_dead_worker_process_is_replaced() {
    let program = WorkerProgram::this_program().expect("this binary").upload();
    let Some(mut bridge) = start(program) else {
        return;
    };
    bridge.send(&attempt::<add1>(1, 41)).expect("sent");
    assert_eq!(value(bridge.recv().expect("a reply")), (1, 42));
    // The tideflow process dies mid-attempt: that attempt is refused as such, and the
    // next attempt on that worker gets a new process.
    bridge.send(&attempt::<die>(2, 0)).expect("sent");
    match bridge.recv().expect("a reply") {
        Reply::Refused(r) => {
            assert_eq!(r.ticket, Some(2));
            assert!(
                r.message.starts_with("worker process died (pid "),
                "{}",
                r.message
            );
        }
        other => panic!("a dead worker process is reported: {other:?}"),
    }
    for t in 3..9 {
        bridge.send(&attempt::<add1>(t, 1)).expect("sent");
    }
    for _ in 3..9 {
        assert_eq!(value(bridge.recv().expect("a reply")).1, 2);
    }
    assert!(bridge.close().expect("it stops").success());
}

/// A task whose runs were short runs on the Dask worker's event loop; one that turns long
/// once, or kills its process there, is answered like any other, and so is what follows.
#[test]
fn a_task_whose_runs_were_short_is_answered_when_it_turns_long_or_dies() {
    let Some(python) = python() else {
        return;
    };
    let program = WorkerProgram::this_program().expect("this binary");
    let mut bridge = DaskBridge::start_with(&python, &Cluster::Local(1), &program).expect("a local cluster");
    let mut ticket = 0;
    let mut call = |bridge: &mut DaskBridge, ms: u64| {
        ticket += 1;
        bridge.send(&attempt::<nap>(ticket, ms)).expect("sent");
        bridge.recv().expect("a reply")
    };
    for _ in 0..3 {
        assert_eq!(value(call(&mut bridge, 0)).1, 0);
    }
    assert_eq!(value(call(&mut bridge, 300)).1, 300);
    for _ in 0..3 {
        assert_eq!(value(call(&mut bridge, 0)).1, 0);
    }
    match call(&mut bridge, u64::MAX) {
        Reply::Refused(r) => assert!(
            r.message.starts_with("worker process died (pid "),
            "{}",
            r.message
        ),
        other => panic!("a dead worker process is reported: {other:?}"),
    }
    assert_eq!(value(call(&mut bridge, 0)).1, 0);
    // Several at once on the one worker: each answered with its own value.
    for ms in [0, 40, 0, 0, 20, 0] {
        ticket += 1;
        bridge.send(&attempt::<nap>(ticket, ms)).expect("sent");
    }
    let mut got: Vec<(u32, u64)> = (0..6).map(|_| value(bridge.recv().expect("a reply"))).collect();
    got.sort_unstable();
    let first = ticket - 5;
    assert_eq!(
        got,
        vec![
            (first, 0),
            (first + 1, 40),
            (first + 2, 0),
            (first + 3, 0),
            (first + 4, 20),
            (first + 5, 0)
        ]
    );
    assert!(bridge.close().expect("it stops").success());
}

#[test]
fn an_unreachable_scheduler_is_one_clear_error() {
    let Some(python) = python() else {
        return;
    };
    // Nothing listens on this port: the bridge gives up after Dask's connect timeout.
    let err = DaskBridge::start_with(
        &python,
        &Cluster::Connect("tcp://127.0.0.1:9".into()),
        &WorkerProgram::this_program().expect("this binary"),
    )
    .expect_err("nothing listens there");
    assert!(matches!(err, DaskError::Bridge(_)), "{err:?}");
    assert!(
        err.to_string().starts_with("cannot reach the Dask cluster: "),
        "{err}"
    );
}

#[test]
fn a_missing_python_is_one_clear_error() {
    let program = WorkerProgram::this_program().expect("this binary");
    let err = DaskBridge::start_with(
        std::path::Path::new("/nonexistent/python3"),
        &Cluster::Local(1),
        &program,
    )
    .expect_err("no such Python");
    assert_eq!(
        err.to_string(),
        "cannot run Python `/nonexistent/python3` for the Dask bridge: No such file or directory (os error 2); \
         install Python 3 and Dask's client (`pip install 'distributed==2026.8.0'`), or set TIDEFLOW_PYTHON to \
         a Python that has it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_runs_on_a_local_dask_cluster_with_one_switch() {
    let Some(python) = python() else {
        return;
    };
    let run = on_the_cluster()
        .executor(DaskExecutor::local(2).python(python))
        .run()
        .await;
    assert_eq!(run.output(), Ok(&(1..=20).sum::<u64>()), "{}", run.summary());
    let ys = run.task("ys");
    assert_eq!(ys.children().len(), 20);
    assert!(ys
        .children()
        .iter()
        .all(|c| c.state() == &State::Success && c.attempts() == 1));
    assert_eq!(run.task("sum").state(), &State::Success);
    // The local task ran here (it fails in a worker process).
    assert_eq!(run.task("here").state(), &State::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_that_dies_fails_its_attempt_which_is_retried() {
    let Some(python) = python() else {
        return;
    };
    let run = survives_a_dead_worker_process()
        .executor(DaskExecutor::local(1).python(python))
        .run()
        .await;
    assert_eq!(run.output(), Ok(&7), "{}", run.summary());
    let t = run.task("dies_once");
    assert_eq!(t.state(), &State::Success);
    assert_eq!(t.attempts(), 2);
}

#[tokio::test]
async fn a_cluster_that_cannot_be_used_fails_the_run_naming_why() {
    let run = on_the_cluster()
        .executor(DaskExecutor::local(1).python("/nonexistent/python3"))
        .run()
        .await;
    let why = "cannot use the cluster (dask local cluster of 1 worker(s)): cannot run Python \
               `/nonexistent/python3` for the Dask bridge: No such file or directory (os error 2); install \
               Python 3 and Dask's client (`pip install 'distributed==2026.8.0'`), or set TIDEFLOW_PYTHON to a \
               Python that has it";
    assert_eq!(run.state(), &State::Failed { message: why.into() });
    assert_eq!(
        run.task("xs").state(),
        &State::Failed {
            message: format!("never ran: {why}")
        }
    );
}

#[test]
fn a_scheduler_address_is_checked() {
    assert!(DaskExecutor::connect("tcp://127.0.0.1:8786").is_ok());
    assert!(DaskExecutor::connect("127.0.0.1:8786").is_ok());
    let err = DaskExecutor::connect("http://127.0.0.1:8786").expect_err("not dask");
    assert_eq!(
        err.to_string(),
        "`http://127.0.0.1:8786` is not a Dask scheduler's address (`http` is not a Dask protocol (tcp, tls, ws, \
         wss)): write it as `tcp://host:port`"
    );
    let err = DaskExecutor::connect("tcp://localhost").expect_err("no port");
    let message =
        "`tcp://localhost` is not a Dask scheduler's address (it has no port): write it as `tcp://host:port`";
    assert_eq!(err.to_string(), message);
    // `?` in a `main` that returns `FlowError` keeps the message.
    let as_flow_error: FlowError = err.into();
    assert_eq!(as_flow_error.to_string(), message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_of_one_executor_share_its_cluster_until_it_is_closed() {
    let Some(python) = python() else {
        return;
    };
    let dask = DaskExecutor::local(2).python(python);
    assert_eq!(dask.scheduler_address(), None, "started by the first run");
    let first = on_the_cluster()
        .with_param("n", 5)
        .expect("n")
        .executor(dask.clone());
    let second = on_the_cluster()
        .with_param("n", 7)
        .expect("n")
        .executor(dask.clone());
    // Two runs at once, one cluster.
    let (a, b) = tokio::join!(first.run(), second.run());
    assert_eq!(a.output(), Ok(&15), "{}", a.summary());
    assert_eq!(b.output(), Ok(&28), "{}", b.summary());
    let address = dask.scheduler_address().expect("the cluster is up between runs");
    let again = on_the_cluster().executor(dask.clone()).run().await;
    assert_eq!(again.output(), Ok(&210));
    assert_eq!(dask.scheduler_address(), Some(address));

    dask.close();
    assert_eq!(dask.scheduler_address(), None);
    // A later run starts it again.
    let after = on_the_cluster()
        .with_param("n", 3)
        .expect("n")
        .executor(dask.clone())
        .run()
        .await;
    assert_eq!(after.output(), Ok(&6), "{}", after.summary());
    assert!(dask.scheduler_address().is_some());
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cluster_stops_after_its_idle_timeout() {
    let Some(python) = python() else {
        return;
    };
    let dask = DaskExecutor::local(1)
        .python(python)
        .idle_timeout(std::time::Duration::from_millis(200));
    let run = on_the_cluster()
        .with_param("n", 2)
        .expect("n")
        .executor(dask.clone())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&3));
    // Waiting for a real process to stop: polled, with a generous bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dask.scheduler_address().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle cluster did not stop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

// ---- faults, on a cluster the test starts with Dask's own commands ----

use common::TestCluster;
use std::time::{Duration, Instant};

use tideflow::event::{Delivery, Received};

/// Takes 20 ms of a worker's time.
#[task]
fn slow_add1(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x + 1
}

flow! {
    fn slow_map(n: u64 = 200) -> u64 {
        let xs = numbers(n);
        let ys = slow_add1.map(xs);
        total(ys)
    }
}

/// Takes 50 ms of a worker's time; tagged for a limit.
#[task(tags = ["db"])]
fn write_row(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    x
}

flow! {
    fn writes(n: u64 = 6) -> u64 {
        let xs = numbers(n);
        let ys = write_row.map(xs);
        total(ys)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_limit_holds_on_a_dask_cluster() {
    let Some(python) = python() else {
        return;
    };
    let dask = DaskExecutor::local(2).python(python).tag_limit("db", 1);
    let mut flow = writes().executor(dask.clone());
    let mut events = flow.subscribe(Delivery::lossless(1024));
    let run = flow.run().await;
    assert_eq!(run.output(), Ok(&15), "{}", run.summary());
    // From the run's own events: never two `write_row` children running at once.
    let mut running = 0;
    let mut most = 0;
    while let Some(Received::Event(e)) = events.try_recv() {
        if e.task.as_deref() != Some("ys") || e.map_index.is_none() {
            continue;
        }
        if e.new == State::Running {
            running += 1;
        } else if e.new.is_finished() {
            running -= 1;
        }
        most = most.max(running);
    }
    assert_eq!(most, 1, "two tagged children ran at once");
    dask.close();
}

/// Takes 100 ms of a worker's time, tagged for a limit; says when it ran (milliseconds
/// since the epoch: start, end).
#[task(tags = ["db"])]
fn timed_write(_x: u64) -> (u64, u64) {
    let now = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let start = now();
    std::thread::sleep(Duration::from_millis(100));
    (start, now())
}

flow! {
    fn timed_writes(n: u64 = 4) -> Vec<(u64, u64)> {
        let xs = numbers(n);
        timed_write.map(xs)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_limit_holds_across_the_runs_on_a_cluster() {
    let Some(python) = python() else {
        return;
    };
    // Two runs at once on a cluster of two workers: each alone would keep to one `db`
    // task at a time; together they keep to one as well.
    let dask = DaskExecutor::local(2).python(python).tag_limit("db", 1);
    let first = timed_writes().executor(dask.clone()).start();
    let second = timed_writes().executor(dask.clone()).start();
    let (first, second) = tokio::join!(first, second);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for run in [&first, &second] {
        spans.extend(run.output().unwrap_or_else(|e| panic!("{e}\n{}", run.summary())));
    }
    assert_eq!(spans.len(), 8);
    spans.sort_unstable();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two `db` tasks ran at once: {pair:?}");
    }
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dask_worker_killed_mid_map_loses_no_result() {
    let Some(python) = python() else {
        return;
    };
    let mut cluster = TestCluster::start(&python, 2);
    let dask = cluster.executor();
    let mut flow = slow_map().executor(dask.clone());
    let mut events = flow.subscribe(Delivery::lossy(100_000));
    let handle = flow.start();
    common::children_succeeded(&mut events, None, 30).await;
    // SIGKILL one of the two Dask workers, mid-map.
    drop(cluster.workers.remove(0));
    let run = tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .expect("the run ends");
    assert_eq!(run.output(), Ok(&(1..=200).sum::<u64>()), "{}", run.summary());
    let ys = run.task("ys");
    assert_eq!(ys.children().len(), 200);
    assert!(ys.children().iter().all(|c| c.state().is_success()));
    dask.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_goes_away_fails_the_run_within_seconds() {
    let Some(python) = python() else {
        return;
    };
    let cluster = TestCluster::start(&python, 1);
    let address = cluster.address.clone();
    let dask = cluster.executor();
    let mut flow = slow_map().executor(dask.clone());
    let mut events = flow.subscribe(Delivery::lossy(100_000));
    let handle = flow.start();
    common::children_succeeded(&mut events, None, 5).await;
    drop(cluster.scheduler);
    let killed = Instant::now();
    let run = tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("the run ends instead of hanging");
    let took = killed.elapsed();
    assert!(run.state().is_failed(), "{}", run.summary());
    let failed = run.failed_tasks();
    let gone = format!("the Dask scheduler at {address} went away");
    assert!(
        failed.iter().any(|(_, state)| state.contains(&gone)),
        "{:?}",
        &failed[..3.min(failed.len())]
    );
    eprintln!("the run failed {took:?} after the scheduler was killed");
}

#[test]
fn a_sync_attempt_past_its_timeout_ends_its_worker_process_which_is_replaced() {
    let Some(python) = python() else {
        return;
    };
    let program = WorkerProgram::this_program().expect("this binary");
    let mut bridge = DaskBridge::start_with(&python, &Cluster::Local(1), &program).expect("a local cluster");
    bridge.send(&attempt::<pid>(1, 0)).expect("sent");
    let (_, before) = value(bridge.recv().expect("a reply"));
    let mut timed = attempt::<overrun>(2, 5);
    timed.timeout = Some(std::time::Duration::from_millis(300));
    bridge.send(&timed).expect("sent");
    // Queued behind it on the one Dask worker: handed on the moment the stuck process
    // has answered, while it is still stopping, and run by a new one.
    bridge.send(&attempt::<pid>(3, 0)).expect("sent");
    assert_eq!(
        bridge.recv().expect("a reply"),
        Reply::Ended(2, WireEnd::TimedOut(std::time::Duration::from_millis(300)))
    );
    let (_, after) = value(bridge.recv().expect("a reply"));
    assert_ne!(before, after, "a new worker process");
    bridge.send(&attempt::<add1>(4, 1)).expect("sent");
    assert_eq!(value(bridge.recv().expect("a reply")), (4, 2));
    assert!(bridge.close().expect("it stops").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_a_local_flow_runs_a_flow_on_a_dask_cluster() {
    let Some(python) = python() else {
        return;
    };
    let run = calls_a_cluster()
        .with_param("python", python.display().to_string())
        .expect("python")
        .run()
        .await;
    // 1 + 2 + 3 + 4 on the cluster, then + 1 here.
    assert_eq!(run.output(), Ok(&11), "{}", run.summary());
}
