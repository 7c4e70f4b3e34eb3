//! State handlers and the Slack notifier: exact transition sequences on tokio's paused
//! clock, handlers that fail or panic without breaking the run, and `SlackNotifier` against
//! a real HTTP server on 127.0.0.1 (up, filtered, down, slow).
//!
//! The flows run on the executor `TIDEFLOW_TEST_EXECUTOR` names: the local one by default,
//! a local Dask cluster with `dask-local:2` (`.ci/run` runs them both ways). Handlers run
//! here whatever the executor.

mod common;

#[cfg(feature = "slack")]
#[cfg(feature = "slack")]
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tideflow::prelude::*;
use tideflow::{HandlerResult, StateHandler};
#[cfg(feature = "slack")]
use tideflow::{Secret, SecretError};
use tracing::instrument::WithSubscriber as _;

/// What each Dask worker runs when the tests use a Dask cluster.
#[test]
fn tideflow_worker() {
    tideflow::worker::serve_if_worker();
}

#[task]
async fn source() -> u32 {
    20
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 2, retry_delay = "10s")]
async fn flaky(ctx: &TaskContext) -> Result<u32, TaskError> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() == 1 {
        return Err(TaskError::fail("first attempt fails"));
    }
    Ok(22)
}

#[task]
fn add_one(x: u32) -> u32 {
    x + 1
}

#[task]
fn boom() -> Result<u32, TaskError> {
    Err(TaskError::fail("boom"))
}

#[task]
fn after_boom(x: u32) -> u32 {
    x
}

#[task]
fn numbers() -> Vec<u32> {
    vec![1, 2]
}

#[task]
fn double(x: u32) -> u32 {
    x * 2
}

flow! {
    fn one_task() -> u32 {
        source()
    }

    fn retried() -> u32 {
        flaky()
    }

    fn chain() -> u32 {
        let x = source();
        add_one(x)
    }

    fn failing() -> u32 {
        let broken = boom();
        after_boom(broken)
    }

    fn mapped() -> Vec<u32> {
        let xs = numbers();
        double.map(xs)
    }
}

type Log = Arc<Mutex<Vec<StateChange>>>;

/// A handler recording every change it sees.
fn recorder() -> (Log, impl Fn(&StateChange) + Send + Sync + 'static) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    (log, move |change: &StateChange| {
        sink.lock().unwrap().push(change.clone())
    })
}

/// `(task, old, new)` of each recorded change.
fn transitions(log: &Log) -> Vec<(String, &'static str, &'static str)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c.task().unwrap_or("(flow)").to_owned(),
                c.old().name(),
                c.new_state().name(),
            )
        })
        .collect()
}

fn t(task: &str, old: &'static str, new: &'static str) -> (String, &'static str, &'static str) {
    (task.to_owned(), old, new)
}

#[tokio::test(start_paused = true)]
async fn a_successful_task_goes_running_then_success() {
    let (log, handler) = recorder();
    let run = one_task()
        .executor(common::executor())
        .on_task_state(handler)
        .run()
        .await;
    assert_eq!(run.output(), Ok(&20));
    assert_eq!(
        transitions(&log),
        [
            t("source", "Pending", "Running"),
            t("source", "Running", "Success")
        ]
    );
    let changes = log.lock().unwrap();
    assert!(changes
        .iter()
        .all(|c| c.flow() == "one_task" && c.flow_run_id() == run.id()));
    assert!(changes.iter().all(|c| c.failed_tasks().is_empty()));
}

#[tokio::test(start_paused = true)]
async fn a_retried_task_goes_failed_retrying_running_success() {
    let (log, handler) = recorder();
    let run = retried()
        .executor(common::executor())
        .on_task_state(handler)
        .run()
        .await;
    assert_eq!(run.output(), Ok(&22));
    assert_eq!(run.task("flaky").attempts(), 2);
    if common::bodies_run_here() {
        assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 2);
    }
    assert_eq!(
        transitions(&log),
        [
            t("flaky", "Pending", "Running"),
            t("flaky", "Running", "Failed"),
            t("flaky", "Failed", "Retrying"),
            t("flaky", "Retrying", "Running"),
            t("flaky", "Running", "Success"),
        ]
    );
    let changes = log.lock().unwrap();
    assert_eq!(
        changes[1].new_state(),
        &State::Failed {
            message: "first attempt fails".into()
        }
    );
    let State::Retrying { attempt, at } = changes[2].new_state().clone() else {
        panic!("not Retrying: {:?}", changes[2].new_state());
    };
    assert_eq!(attempt, 2);
    assert_eq!(
        at.duration_since(changes[2].at()).unwrap(),
        Duration::from_secs(10)
    );
    assert_eq!(changes[3].old(), changes[2].new_state());
}

#[tokio::test(start_paused = true)]
async fn scheduler_decided_states_and_mapped_children_are_reported() {
    let (log, handler) = recorder();
    let run = failing()
        .executor(common::executor())
        .on_task_state(handler)
        .run()
        .await;
    assert!(run.state().is_failed());
    assert_eq!(
        transitions(&log),
        [
            t("broken", "Pending", "Running"),
            t("broken", "Running", "Failed"),
            t("after_boom", "Pending", "TriggerFailed"),
        ]
    );

    let (log, handler) = recorder();
    let run = mapped()
        .executor(common::executor())
        .on_task_state(handler)
        .run()
        .await;
    assert_eq!(run.output(), Ok(&vec![2, 4]));
    let seen = transitions(&log);
    // Children may interleave; each has its own ordered pair.
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(
        seen[..3],
        [
            t("xs", "Pending", "Running"),
            t("xs", "Running", "Success"),
            t("double", "Pending", "Mapped"),
        ]
    );
    for child in ["double[0]", "double[1]"] {
        let mine: Vec<_> = seen.iter().filter(|c| c.0 == child).cloned().collect();
        assert_eq!(
            mine,
            [t(child, "Pending", "Running"), t(child, "Running", "Success")]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn flow_handlers_see_the_flow_run_start_and_end() {
    let (log, handler) = recorder();
    let run = chain()
        .executor(common::executor())
        .on_flow_state(handler)
        .run()
        .await;
    assert_eq!(run.output(), Ok(&21));
    assert_eq!(
        transitions(&log),
        [
            t("(flow)", "Pending", "Running"),
            t("(flow)", "Running", "Success")
        ]
    );
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .all(|c| c.task().is_none() && c.flow_run_id() == run.id()));

    let (log, handler) = recorder();
    let run = failing()
        .executor(common::executor())
        .on_flow_state(handler)
        .run()
        .await;
    assert!(run.state().is_failed());
    let changes = log.lock().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].new_state(), run.state());
    assert_eq!(changes[1].failed_tasks(), ["broken", "after_boom"]);
    assert!(changes[0].failed_tasks().is_empty());
}

struct Failing;

impl StateHandler for Failing {
    fn on_change(&self, _: &StateChange) -> HandlerResult {
        Err("the handler's own error".into())
    }
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_errors_or_panics_is_logged_and_never_breaks_the_run() {
    let logs = Captured::default();
    let (log, handler) = recorder();
    let run = chain()
        .executor(common::executor())
        .on_task_state(|_: &StateChange| panic!("handler panic"))
        .on_task_state(Failing)
        .on_task_state(handler)
        .on_flow_state(|_: &StateChange| panic!("flow handler panic"))
        .on_flow_state(Failing)
        .run()
        .with_subscriber(logs.subscriber())
        .await;
    assert_eq!(run.state(), &State::Success);
    assert_eq!(run.output(), Ok(&21));
    assert_eq!(run.task("add_one").state(), &State::Success);
    // Handlers after a failing one still run.
    assert_eq!(transitions(&log).len(), 4);
    let logged = logs.text();
    assert!(logged.contains("a state handler panicked; ignored"), "{logged}");
    assert!(logged.contains("handler panic"), "{logged}");
    assert!(logged.contains("flow handler panic"), "{logged}");
    assert!(logged.contains("a state handler failed; ignored"), "{logged}");
    assert!(logged.contains("the handler's own error"), "{logged}");
    assert!(logged.contains("WARN"), "{logged}");
}

// ---- Slack ----

#[cfg(feature = "slack")]
/// A webhook path standing in for Slack's secret one: it must never reach a log line.
const SECRET_PATH: &str = "/services/T0000/B0000/XXXXsecretXXXX";

#[cfg(feature = "slack")]
fn url(port: u16) -> Secret {
    Secret::new(format!("http://127.0.0.1:{port}{SECRET_PATH}"))
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn the_slack_notifier_posts_slack_json_for_a_failed_flow_run() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = common::serve_once(listener);
    let notifier = SlackNotifier::new(url(port)).only_states([StateKind::Success, StateKind::Failed]);
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        failing()
            .executor(common::executor())
            .on_flow_state(notifier)
            .run(),
    )
    .await
    .expect("the run finishes");
    assert!(run.state().is_failed());

    let (head, body) = server.join().expect("the server got one request");
    assert!(
        head.starts_with(&format!("POST {SECRET_PATH} HTTP/1.1")),
        "{head}"
    );
    assert!(
        head.lines()
            .any(|l| l.to_ascii_lowercase().starts_with("content-type:") && l.contains("application/json")),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    let text = json["text"].as_str().expect("a text fallback");
    for needle in [
        "failing",
        "Failed",
        &run.id().to_string(),
        "`broken`",
        "`after_boom`",
    ] {
        assert!(text.contains(needle), "`{needle}` not in {text}");
    }
    let block = &json["blocks"][0];
    assert_eq!(block["type"], "section");
    assert_eq!(block["text"]["type"], "mrkdwn");
    let mrkdwn = block["text"]["text"].as_str().unwrap();
    for needle in ["failing", "Failed", &run.id().to_string(), "`broken`"] {
        assert!(mrkdwn.contains(needle), "`{needle}` not in {mrkdwn}");
    }
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn only_states_filters_what_the_notifier_posts() {
    // Nothing accepts: a post would sit in the backlog, where the test finds it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let notifier = SlackNotifier::new(url(port))
        .only_states([StateKind::Failed])
        .timeout(Duration::from_millis(200));
    assert!(notifier.wants(StateKind::Failed));
    assert!(!notifier.wants(StateKind::Success));
    assert!(!notifier.wants(StateKind::Running));
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        chain().executor(common::executor()).on_flow_state(notifier).run(),
    )
    .await
    .expect("the run finishes");
    assert_eq!(run.output(), Ok(&21));
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the notifier posted for a Success run: {other:?}"),
    }
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_is_down_is_logged_and_the_flow_state_is_unchanged() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // Dropped: nothing listens there now.
    let logs = Captured::default();
    let notifier = SlackNotifier::new(url(port)).timeout(Duration::from_secs(5));
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        chain()
            .executor(common::executor())
            .on_flow_state(notifier)
            .run()
            .with_subscriber(logs.subscriber()),
    )
    .await
    .expect("the run finishes");
    assert_eq!(run.state(), &State::Success);
    assert_eq!(run.output(), Ok(&21));
    let logged = logs.text();
    assert!(logged.contains("WARN"), "{logged}");
    assert!(logged.contains("posting to the Slack webhook failed"), "{logged}");
    assert!(
        !logged.contains("XXXXsecretXXXX"),
        "the webhook URL leaked:\n{logged}"
    );
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_webhook_times_out_and_the_run_completes() {
    // Accepts (the kernel's backlog does) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let holder = Arc::clone(&held);
    std::thread::spawn(move || {
        while let Ok((stream, _)) = listener.accept() {
            holder.lock().unwrap().push(stream);
        }
    });
    let logs = Captured::default();
    let notifier = SlackNotifier::new(url(port)).timeout(Duration::from_millis(200));
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        failing()
            .executor(common::executor())
            .on_flow_state(notifier)
            .run()
            .with_subscriber(logs.subscriber()),
    )
    .await
    .expect("the run finishes despite the webhook never answering");
    assert!(run.state().is_failed());
    assert_eq!(run.task("broken").state().message(), Some("boom"));
    let logged = logs.text();
    assert!(logged.contains("posting to the Slack webhook failed"), "{logged}");
    assert!(
        !logged.contains("XXXXsecretXXXX"),
        "the webhook URL leaked:\n{logged}"
    );
}

#[cfg(feature = "slack")]
#[test]
fn a_notifier_reads_its_webhook_from_a_secret_and_never_prints_it() {
    let missing = SlackNotifier::from_secret("TIDEFLOW_TEST_SLACK_UNSET").unwrap_err();
    assert_eq!(
        missing,
        SecretError::NotSet {
            name: "TIDEFLOW_TEST_SLACK_UNSET".into()
        }
    );
    std::env::set_var("TIDEFLOW_TEST_SLACK_URL", "https://hooks.example/XXXXsecretXXXX");
    let notifier = SlackNotifier::from_secret("TIDEFLOW_TEST_SLACK_URL").unwrap();
    let shown = format!("{notifier:?}");
    assert!(!shown.contains("XXXXsecretXXXX"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
}

#[test]
fn state_kinds_match_states() {
    assert_eq!(State::Success.kind(), StateKind::Success);
    assert_eq!(State::Failed { message: "x".into() }.kind(), StateKind::Failed);
    let retrying = State::Retrying {
        attempt: 2,
        at: SystemTime::now(),
    };
    assert_eq!(retrying.kind(), StateKind::Retrying);
    assert_eq!(State::Mapped { children: 3 }.kind(), StateKind::Mapped);
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[task(timeout = "50ms")]
fn overruns() -> u8 {
    std::thread::sleep(Duration::from_millis(300));
    1
}

#[task(timeout = "1s")]
async fn overruns_async() -> u8 {
    tokio::time::sleep(Duration::from_secs(5)).await;
    1
}

flow! {
    fn overrun() -> u8 {
        overruns()
    }

    fn overrun_async() -> u8 {
        overruns_async()
    }
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_async_task_goes_running_then_timed_out() {
    let (log, handler) = recorder();
    let run = overrun_async()
        .executor(common::executor())
        .on_task_state(handler)
        .run()
        .await;
    assert!(run.state().is_failed());
    assert_eq!(
        transitions(&log),
        [
            t("overruns_async", "Pending", "Running"),
            t("overruns_async", "Running", "TimedOut")
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_sync_attempt_reports_timed_out_and_not_its_late_end() {
    let (log, handler) = recorder();
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        overrun()
            .executor(common::executor())
            .on_task_state(handler)
            .run(),
    )
    .await
    .expect("the run finishes");
    assert!(run.task("overruns").state().is_timed_out());
    // The abandoned attempt ends later (on its pool thread; on Dask its worker process
    // ends): handlers do not hear of it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        transitions(&log),
        [
            t("overruns", "Pending", "Running"),
            t("overruns", "Running", "TimedOut")
        ]
    );
}
