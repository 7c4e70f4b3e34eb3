//! The event stream of a run and the handle of a run started in the background:
//! exact events in order, lossless and lossy delivery, and cancellation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tideflow::event::{Delivery, Received, RunEvent, Subscription};
use tideflow::prelude::*;
use tideflow::FlowRunId;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

static FLAKY_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Fails its first attempt.
#[task(max_retries = 1, retry_delay = "2s")]
fn flaky(x: u64, ctx: &TaskContext) -> Result<u64, TaskError> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    match ctx.attempt() {
        1 => Err(TaskError::fail("first attempt fails")),
        _ => Ok(x + 1),
    }
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

flow! {
    fn retried_map(n: u64 = 2) -> u64 {
        let xs = numbers(n);
        let ys = flaky.map(xs);
        total(ys)
    }
}

/// `(name, old, new, attempt)` of each event, and checks what every event shares.
fn describe(events: &[RunEvent], run: FlowRunId) -> Vec<(String, &'static str, &'static str, u32)> {
    for (k, e) in events.iter().enumerate() {
        assert_eq!(e.seq, k as u64 + 1, "events are numbered from 1, in order: {e:?}");
        assert_eq!(e.flow_run_id, run);
        assert_eq!(e.flow, "retried_map");
        match &e.task {
            Some(_) => {
                let id = e.task_run_id.expect("a task run's event names its task run");
                assert_eq!((id.flow_run, id.map_index), (run, e.map_index));
            }
            None => assert_eq!(e.task_run_id, None),
        }
    }
    events
        .iter()
        .map(|e| (e.name(), e.old.name(), e.new.name(), e.attempt))
        .collect()
}

fn ev(
    name: &str,
    old: &'static str,
    new: &'static str,
    attempt: u32,
) -> (String, &'static str, &'static str, u32) {
    (name.to_owned(), old, new, attempt)
}

/// Every event queued on `events` now (the run has ended).
fn drain(events: &mut Subscription) -> Vec<RunEvent> {
    let mut out = Vec::new();
    while let Some(r) = events.try_recv() {
        match r {
            Received::Event(e) => out.push(e),
            Received::Missed(n) => panic!("a lossless subscriber missed {n} events"),
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_gets_every_state_change_of_a_run_in_order() {
    let mut flow = retried_map().executor(SequentialExecutor);
    let mut events = flow.subscribe(Delivery::lossless(1024));
    let run = flow.run().await;
    assert_eq!(run.output(), Ok(&3));
    let seen = drain(&mut events);
    assert_eq!(
        describe(&seen, run.id()),
        [
            ev("retried_map", "Pending", "Running", 0),
            ev("xs", "Pending", "Running", 1),
            ev("xs", "Running", "Success", 1),
            ev("ys", "Pending", "Mapped", 0),
            ev("ys[0]", "Pending", "Running", 1),
            ev("ys[0]", "Running", "Failed", 1),
            ev("ys[0]", "Failed", "Retrying", 1),
            ev("ys[0]", "Retrying", "Running", 2),
            ev("ys[0]", "Running", "Success", 2),
            ev("ys[1]", "Pending", "Running", 1),
            ev("ys[1]", "Running", "Failed", 1),
            ev("ys[1]", "Failed", "Retrying", 1),
            ev("ys[1]", "Retrying", "Running", 2),
            ev("ys[1]", "Running", "Success", 2),
            ev("total", "Pending", "Running", 1),
            ev("total", "Running", "Success", 1),
            ev("retried_map", "Running", "Success", 0),
        ]
    );
    // The retry's wait is in the event: 2 s after the failure.
    let retrying = &seen[6];
    let State::Retrying { attempt, at } = &retrying.new else {
        panic!("not Retrying: {retrying:?}");
    };
    assert_eq!(*attempt, 2);
    assert_eq!(at.duration_since(retrying.at).ok(), Some(Duration::from_secs(2)));
    assert_eq!(
        seen[5].message(),
        Some("first attempt fails"),
        "a failure's event carries its message"
    );
    // Events are plain data: they serialize.
    let json = serde_json::to_string(&seen[6]).expect("an event serializes");
    let back: RunEvent = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(back, seen[6]);

    // Another run of the same flow value publishes to the same subscription, numbered
    // from 1 again, under its own id.
    let again = flow.run().await;
    let seen = drain(&mut events);
    assert_eq!(seen.len(), 17);
    assert_eq!(seen[0].seq, 1);
    assert!(seen.iter().all(|e| e.flow_run_id == again.id()));
}

#[tokio::test(start_paused = true)]
async fn a_lossy_subscriber_that_falls_behind_is_told_how_many_events_it_missed() {
    let mut flow = retried_map()
        .with_param("n", 20)
        .expect("n")
        .executor(SequentialExecutor);
    let mut everything = flow.subscribe(Delivery::lossless(4096));
    let mut lossy = flow.subscribe(Delivery::lossy(3));
    let run = flow.run().await;
    assert!(run.state().is_successful());
    drop(flow);
    let all = drain(&mut everything);
    // 1 flow start + numbers (2) + Mapped + 20 children × 5 + total (2) + flow end.
    assert_eq!(all.len(), 1 + 2 + 1 + 20 * 5 + 2 + 1);
    let mut received = Vec::new();
    while let Some(r) = lossy.recv().await {
        received.push(r);
    }
    // Nobody read during the run: the first 3 events fit, every later one was dropped
    // and counted, and the count comes once the run is over.
    assert_eq!(
        received,
        [
            Received::Event(all[0].clone()),
            Received::Event(all[1].clone()),
            Received::Event(all[2].clone()),
            Received::Missed(all.len() as u64 - 3),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lossless_subscriber_slows_the_run_and_misses_nothing() {
    let mut flow = retried_map()
        .with_param("n", 50)
        .expect("n")
        .with_task_options("ys", |o| o.retry_delay = Duration::ZERO)
        .expect("ys");
    let mut events = flow.subscribe(Delivery::lossless(1));
    let handle = flow.start();
    let id = handle.id();
    let mut seen = Vec::new();
    while seen
        .last()
        .is_none_or(|e: &RunEvent| e.task.is_some() || !e.new.is_finished())
    {
        match events.recv().await {
            Some(Received::Event(e)) => seen.push(e),
            other => panic!("a lossless subscriber got {other:?}"),
        }
        if seen.len() % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let run = handle.await;
    assert_eq!(run.output(), Ok(&(50 * 51 / 2)));
    assert_eq!(run.id(), id);
    assert_eq!(seen.len(), 1 + 2 + 1 + 50 * 5 + 2 + 1);
    assert!(seen.iter().enumerate().all(|(k, e)| e.seq == k as u64 + 1));
    // Each child's own events are in order.
    for i in 0..50u32 {
        let mine: Vec<_> = seen
            .iter()
            .filter(|e| e.map_index == Some(i))
            .map(|e| (e.old.name(), e.new.name()))
            .collect();
        assert_eq!(
            mine,
            [
                ("Pending", "Running"),
                ("Running", "Failed"),
                ("Failed", "Retrying"),
                ("Retrying", "Running"),
                ("Running", "Success")
            ]
        );
    }
}

#[task]
fn add1(x: u64) -> u64 {
    x + 1
}

flow! {
    fn wide_map(n: u64 = 5000) -> u64 {
        let xs = numbers(n);
        let ys = add1.map(xs);
        total(ys)
    }
}

/// Short sync bodies run inline, so a map's events fill the outbox with nothing in
/// flight: the run must go on once they are delivered (it used to wait forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_map_of_inline_tasks_runs_past_a_full_outbox() {
    let mut flow = wide_map();
    let mut events = flow.subscribe(Delivery::lossless(100_000));
    let run = tokio::time::timeout(Duration::from_secs(30), flow.run())
        .await
        .expect("the run ends");
    assert_eq!(run.output(), Ok(&(5000 * 5001 / 2)));
    drop(flow);
    let seen = drain(&mut events);
    // The flow's 2, `xs`'s 2, `ys`'s 1 (Mapped), 2 per child, `total`'s 2.
    assert_eq!(seen.len(), 2 + 2 + 1 + 2 * 5000 + 2);
    assert!(seen.iter().enumerate().all(|(k, e)| e.seq == k as u64 + 1));
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Takes 10 ms of tokio's clock.
#[task]
async fn tick(x: u64) -> u64 {
    STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10)).await;
    x
}

flow! {
    fn ticks(n: u64 = 10) -> u64 {
        let xs = numbers(n);
        let ys = tick.map(xs);
        total(ys)
    }
}

#[tokio::test(start_paused = true)]
async fn cancelling_mid_map_ends_every_unfinished_task_run_cancelled_and_nothing_runs_after() {
    let mut flow = ticks().executor(LocalExecutor::new().max_concurrency(2));
    let mut events = flow.subscribe(Delivery::lossless(1024));
    let handle = flow.start();
    // Children 0 and 1 end at 10 ms; 2 and 3 run from 10 ms to 20 ms.
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert_eq!(STARTED.load(Ordering::SeqCst), 4);
    handle.cancel();
    let run = handle.await;

    let cancelled = State::Cancelled {
        message: "the flow run was cancelled".into(),
    };
    assert_eq!(
        run.state(),
        &State::Cancelled {
            message: "cancelled while it ran".into()
        }
    );
    assert_eq!(run.task("xs").state(), &State::Success);
    let ys = run.task("ys");
    assert_eq!(ys.state(), &State::Mapped { children: 10 });
    let children: Vec<(&State, u32)> = ys.children().iter().map(|c| (c.state(), c.attempts())).collect();
    let mut expected = vec![
        (&State::Success, 1),
        (&State::Success, 1),
        (&cancelled, 1),
        (&cancelled, 1),
    ];
    expected.extend([(&cancelled, 0); 6]);
    assert_eq!(children, expected);
    assert_eq!(
        ys.children()[1].result::<u64>(),
        None,
        "results are released as usual"
    );
    assert_eq!(run.task("total").state(), &cancelled);
    assert_eq!(run.task("total").attempts(), 0);
    assert!(run.output().is_err());

    // Nothing starts after the cancel, however long we wait.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(STARTED.load(Ordering::SeqCst), 4);

    // The events end with the cancellation: the running children, then the pending
    // ones, then the flow run.
    drop(flow);
    let seen = drain(&mut events);
    let tail: Vec<(String, &str, &str)> = seen
        .iter()
        .filter(|e| e.new.is_cancelled())
        .map(|e| (e.name(), e.old.name(), e.new.name()))
        .collect();
    let mut expected: Vec<(String, &str, &str)> = vec![
        ("ys[2]".into(), "Running", "Cancelled"),
        ("ys[3]".into(), "Running", "Cancelled"),
    ];
    expected.extend((4..10).map(|i| (format!("ys[{i}]"), "Pending", "Cancelled")));
    expected.push(("total".into(), "Pending", "Cancelled"));
    expected.push(("ticks".into(), "Running", "Cancelled"));
    assert_eq!(tail, expected);
}

static BLOCKED: Mutex<Option<std::sync::mpsc::Receiver<()>>> = Mutex::new(None);
static ENTERED: AtomicUsize = AtomicUsize::new(0);

/// Child 0 blocks its thread until the test lets it go.
#[task]
fn stuck(x: u64) -> u64 {
    ENTERED.fetch_add(1, Ordering::SeqCst);
    if x == 0 {
        if let Some(rx) = BLOCKED.lock().unwrap().take() {
            let _ = rx.recv();
        }
    }
    x
}

flow! {
    fn stuck_map(n: u64 = 5) -> u64 {
        let xs = numbers(n);
        let ys = stuck.map(xs);
        total(ys)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_sync_attempt_is_abandoned_and_its_late_result_discarded() {
    let (release, rx) = std::sync::mpsc::channel();
    *BLOCKED.lock().unwrap() = Some(rx);
    let handle = stuck_map()
        .executor(LocalExecutor::new().max_concurrency(1).sync_threads(1))
        .start();
    while ENTERED.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    handle.cancel();
    // The run ends at once, although child 0's thread is still blocked.
    let run = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("a cancelled run does not wait for a blocked sync attempt");
    assert!(run.state().is_cancelled());
    let ys = run.task("ys");
    let children: Vec<(&str, u32)> = ys
        .children()
        .iter()
        .map(|c| (c.state().name(), c.attempts()))
        .collect();
    assert_eq!(
        children,
        [
            ("Cancelled", 1),
            ("Cancelled", 0),
            ("Cancelled", 0),
            ("Cancelled", 0),
            ("Cancelled", 0)
        ]
    );
    release.send(()).expect("child 0 is still waiting");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ENTERED.load(Ordering::SeqCst), 1, "nothing ran after the cancel");
}

static DROPPED_STARTED: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn counted(x: u64) -> u64 {
    DROPPED_STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10)).await;
    x
}

flow! {
    fn counted_map(n: u64 = 6) -> u64 {
        let xs = numbers(n);
        let ys = counted.map(xs);
        total(ys)
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_handle_cancels_its_run() {
    let handle = counted_map()
        .executor(LocalExecutor::new().max_concurrency(1))
        .start();
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert_eq!(DROPPED_STARTED.load(Ordering::SeqCst), 2);
    drop(handle);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(DROPPED_STARTED.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_handle_subscription_sees_the_run_from_then_on() {
    let handle = retried_map().executor(SequentialExecutor).start();
    let id = handle.id();
    let mut events = handle.subscribe(Delivery::lossless(64));
    let run = handle.await;
    assert_eq!(run.output(), Ok(&3));
    let mut seen = Vec::new();
    while let Some(Received::Event(e)) = events.recv().await {
        seen.push(e);
    }
    // Subscribed before the run's first step: it sees all of it, ending with the flow.
    let last = seen.last().expect("events");
    assert_eq!((last.task.as_deref(), last.new.name()), (None, "Success"));
    assert!(seen.iter().all(|e| e.flow_run_id == id));
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    let first = seqs[0];
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
}
