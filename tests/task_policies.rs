//! Task policies a production pipeline needs: timeouts and retry policies (backoff, cap,
//! jitter, `retry_on`, the explicit retry signal). Exact states, attempts and call counts;
//! every wait runs on tokio's paused clock.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tideflow::prelude::*;
use tideflow::TaskOptions;
use tokio::time::Instant;

// ---- timeouts ----

static ASYNC_SIDE_EFFECT: AtomicBool = AtomicBool::new(false);
static ASYNC_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(timeout = "30s")]
async fn slow_async() -> u8 {
    ASYNC_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    ASYNC_SIDE_EFFECT.store(true, Ordering::SeqCst);
    1
}

static RETRIED_TIMEOUT_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(timeout = "1s", max_retries = 2, retry_delay = "10s")]
async fn times_out_then_succeeds(ctx: &TaskContext) -> u32 {
    RETRIED_TIMEOUT_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() < 3 {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    ctx.attempt()
}

/// Runs a flow whose sync tasks block: tokio's paused clock does not move on its own while
/// a blocking call runs, so the test moves it, 10 ms at a time, giving the pool thread a
/// real millisecond between steps to finish what it can.
async fn drive<O: 'static>(flow: tokio::task::JoinHandle<tideflow::FlowRun<O>>) -> tideflow::FlowRun<O> {
    while !flow.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    flow.await.expect("the flow run task")
}

static RELEASE: AtomicBool = AtomicBool::new(false);
static SYNC_LATE: AtomicBool = AtomicBool::new(false);

#[task(timeout = "2s")]
fn stuck_sync() -> u8 {
    // Cannot be stopped mid-call: it runs on until the test releases it.
    while !RELEASE.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    SYNC_LATE.store(true, Ordering::SeqCst);
    7
}

#[task]
fn after_timeout(x: u8) -> u8 {
    x
}

flow! {
    fn async_timeout() -> u8 {
        slow_async()
    }

    fn retried_timeout() -> u32 {
        times_out_then_succeeds()
    }

    fn sync_timeout() -> u8 {
        let stuck = stuck_sync();
        after_timeout(stuck)
    }
}

#[tokio::test(start_paused = true)]
async fn an_async_task_is_cancelled_at_its_timeout() {
    let start = Instant::now();
    let run = async_timeout().run().await;
    let t = run.task("slow_async");
    assert_eq!(
        t.state(),
        &State::TimedOut {
            message: "timed out after 30s".into()
        }
    );
    assert!(t.state().is_failed());
    assert_eq!(t.attempts(), 1);
    assert!(run.state().is_failed());
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    // Its side effect after the timeout never happens, however long we wait.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(!ASYNC_SIDE_EFFECT.load(Ordering::SeqCst));
    assert_eq!(ASYNC_CALLS.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried_like_any_failure() {
    let start = Instant::now();
    let run = retried_timeout().run().await;
    let t = run.task("times_out_then_succeeds");
    assert_eq!(t.state(), &State::Success);
    assert_eq!(t.attempts(), 3);
    assert_eq!(run.output(), Ok(&3));
    assert_eq!(RETRIED_TIMEOUT_CALLS.load(Ordering::SeqCst), 3);
    // Two timeouts of 1 s and two retry delays of 10 s.
    assert_eq!(start.elapsed(), Duration::from_secs(22));
}

#[tokio::test(start_paused = true)]
async fn a_sync_task_ends_timed_out_at_its_timeout_and_its_late_result_is_discarded() {
    let start = Instant::now();
    let run = drive(tokio::spawn(async { sync_timeout().run().await })).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed <= Duration::from_millis(2100),
        "{elapsed:?}"
    );
    let stuck = run.task("stuck");
    assert_eq!(
        stuck.state(),
        &State::TimedOut {
            message: "timed out after 2s".into()
        }
    );
    assert!(run.task("after_timeout").state().is_trigger_failed());
    assert!(stuck.result::<u8>().is_none());
    // The call itself goes on until it returns; its result goes nowhere.
    assert!(!SYNC_LATE.load(Ordering::SeqCst));
    RELEASE.store(true, Ordering::SeqCst);
}

static RELEASE_FIRST: AtomicBool = AtomicBool::new(false);
static SYNC_RETRY_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(timeout = "1s", max_retries = 1, retry_delay = "5s")]
fn stuck_once(ctx: &TaskContext) -> u32 {
    SYNC_RETRY_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() == 1 {
        while !RELEASE_FIRST.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    ctx.attempt()
}

flow! {
    fn sync_timeout_retried() -> u32 {
        stuck_once()
    }
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_sync_attempt_is_retried_with_its_inputs() {
    let run = drive(tokio::spawn(async { sync_timeout_retried().run().await })).await;
    let t = run.task("stuck_once");
    assert_eq!(t.state(), &State::Success);
    assert_eq!(t.attempts(), 2);
    assert_eq!(
        run.output(),
        Ok(&2),
        "the second attempt's result, not the stuck first one's"
    );
    assert_eq!(SYNC_RETRY_CALLS.load(Ordering::SeqCst), 2);
    RELEASE_FIRST.store(true, Ordering::SeqCst);
}

static RELEASE_SEQ: AtomicBool = AtomicBool::new(false);
static SEQ_LATE: AtomicBool = AtomicBool::new(false);

#[task(timeout = "1s")]
fn stuck_sequential() -> u8 {
    while !RELEASE_SEQ.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    SEQ_LATE.store(true, Ordering::SeqCst);
    7
}

flow! {
    fn sequential_timeout() -> u8 {
        let stuck = stuck_sequential();
        after_timeout(stuck)
    }
}

#[tokio::test(start_paused = true)]
async fn the_sequential_executor_abandons_a_sync_attempt_at_its_timeout_too() {
    let run = drive(tokio::spawn(async {
        sequential_timeout().executor(SequentialExecutor).run().await
    }))
    .await;
    assert_eq!(
        run.task("stuck").state(),
        &State::TimedOut {
            message: "timed out after 1s".into()
        }
    );
    assert!(run.task("after_timeout").state().is_trigger_failed());
    assert!(
        !SEQ_LATE.load(Ordering::SeqCst),
        "the run did not wait for the stuck call"
    );
    RELEASE_SEQ.store(true, Ordering::SeqCst);
}

// ---- retry policies ----

static BACKOFF_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(
    max_retries = 5,
    retry_delay = "1s",
    retry_backoff = 2.0,
    retry_max_delay = "5s"
)]
fn backs_off() -> Result<u8, TaskError> {
    BACKOFF_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(TaskError::fail("still down"))
}

#[task(max_retries = 20, retry_delay = "10s", retry_jitter = 0.5)]
fn jittery() -> Result<u8, TaskError> {
    Err(TaskError::fail("down"))
}

#[derive(Debug)]
struct Transient;
impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset")
    }
}
impl std::error::Error for Transient {}

fn is_transient(e: &TaskError) -> bool {
    e.downcast_ref::<Transient>().is_some()
}

static TRANSIENT_CALLS: AtomicU32 = AtomicU32::new(0);
static PERMANENT_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 3, retry_delay = "1s", retry_on = is_transient)]
fn transient_errors() -> Result<u8, TaskError> {
    TRANSIENT_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(Transient.into())
}

#[task(max_retries = 3, retry_delay = "1s", retry_on = is_transient)]
fn permanent_errors() -> Result<u8, TaskError> {
    PERMANENT_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(TaskError::fail("bad input"))
}

static RETRY_SIGNAL_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 1, retry_delay = "1s")]
fn signals_retry(ctx: &TaskContext) -> Result<u32, TaskError> {
    RETRY_SIGNAL_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() < 5 {
        return Err(TaskError::retry("not ready yet"));
    }
    Ok(ctx.attempt())
}

#[task(max_retries = 3, retry_delay = "1s")]
fn skips() -> Result<u8, TaskError> {
    Err(TaskError::skip("nothing to do"))
}

#[task(max_retries = 3, retry_delay = "1s")]
fn downstream(x: u8) -> u8 {
    x
}

flow! {
    fn backoff() -> u8 {
        backs_off()
    }

    fn jitter() -> u8 {
        jittery()
    }

    fn filtered() {
        transient_errors();
        permanent_errors();
    }

    fn retry_signal() -> u32 {
        signals_retry()
    }

    fn never_retried() -> u8 {
        let a = fails_once();
        let b = downstream(a);
        let s = skips();
        downstream(s)
    }
}

#[task]
fn fails_once() -> Result<u8, TaskError> {
    Err(TaskError::fail("upstream broke"))
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_doubles_each_wait_up_to_its_cap() {
    let start = Instant::now();
    let run = backoff().run().await;
    assert_eq!(run.task("backs_off").attempts(), 6);
    assert_eq!(BACKOFF_CALLS.load(Ordering::SeqCst), 6);
    // Waits of 1, 2, 4, then 5, 5 seconds (capped).
    assert_eq!(start.elapsed(), Duration::from_secs(1 + 2 + 4 + 5 + 5));
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_each_wait_within_its_bounds() {
    let start = Instant::now();
    let run = jitter().run().await;
    assert_eq!(run.task("jittery").attempts(), 21);
    let elapsed = start.elapsed();
    // 20 waits of 10 s ± 50%: between 100 s and 300 s, and not all exactly 10 s.
    assert!(
        elapsed >= Duration::from_secs(100) && elapsed <= Duration::from_secs(300),
        "{elapsed:?}"
    );
    assert_ne!(elapsed, Duration::from_secs(200));
}

#[tokio::test(start_paused = true)]
async fn retry_on_retries_only_the_errors_it_accepts() {
    let run = filtered().run().await;
    assert_eq!(run.task("transient_errors").attempts(), 4);
    assert_eq!(TRANSIENT_CALLS.load(Ordering::SeqCst), 4);
    assert_eq!(run.task("permanent_errors").attempts(), 1);
    assert_eq!(PERMANENT_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(
        run.task("permanent_errors").state(),
        &State::Failed {
            message: "bad input".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn an_explicit_retry_signal_retries_past_max_retries() {
    let start = Instant::now();
    let run = retry_signal().run().await;
    assert_eq!(run.output(), Ok(&5));
    assert_eq!(run.task("signals_retry").attempts(), 5);
    assert_eq!(RETRY_SIGNAL_CALLS.load(Ordering::SeqCst), 5);
    assert_eq!(start.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn trigger_failures_and_skips_are_never_retried() {
    let start = Instant::now();
    let run = never_retried().run().await;
    assert!(run.task("b").state().is_trigger_failed());
    assert_eq!(run.task("b").attempts(), 0);
    assert!(run.task("s").state().is_skipped());
    assert_eq!(run.task("s").attempts(), 1);
    assert!(run.task("downstream").state().is_skipped());
    assert_eq!(run.task("downstream").attempts(), 0);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[test]
fn retry_waits_follow_the_policy() {
    let options = TaskOptions {
        retry_delay: Duration::from_secs(2),
        retry_backoff: tideflow::Backoff {
            factor: 3.0,
            max: Some(Duration::from_secs(30)),
            jitter: 0.25,
        },
        ..TaskOptions::DEFAULT
    };
    // `unit` 0.5 is the middle of the jitter: no spread.
    assert_eq!(options.retry_wait(1, 0.5), Duration::from_secs(2));
    assert_eq!(options.retry_wait(2, 0.5), Duration::from_secs(6));
    assert_eq!(options.retry_wait(3, 0.5), Duration::from_secs(18));
    assert_eq!(options.retry_wait(4, 0.5), Duration::from_secs(30));
    // The ends of the jitter: -25% and (almost) +25%.
    assert_eq!(options.retry_wait(1, 0.0), Duration::from_millis(1500));
    assert_eq!(options.retry_wait(4, 1.0), Duration::from_millis(37500));
}

// ---- concurrency limits by tag ----

static DB_NOW: AtomicU32 = AtomicU32::new(0);
static DB_MAX: AtomicU32 = AtomicU32::new(0);
static FREE_MAX: AtomicU32 = AtomicU32::new(0);
static FREE_NOW: AtomicU32 = AtomicU32::new(0);

async fn hold(now: &AtomicU32, max: &AtomicU32) {
    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
    max.fetch_max(running, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    now.fetch_sub(1, Ordering::SeqCst);
}

#[task(tags = ["db"])]
async fn write_row(x: u64) -> u64 {
    hold(&DB_NOW, &DB_MAX).await;
    x
}

#[task(tags = ["db", "audit"])]
async fn audit_row(x: u64) -> u64 {
    hold(&DB_NOW, &DB_MAX).await;
    x
}

#[task]
async fn unlimited(x: u64) -> u64 {
    hold(&FREE_NOW, &FREE_MAX).await;
    x
}

flow! {
    fn database() -> u64 {
        let written = write_row.map([1, 2, 3, 4, 5, 6]);
        let audited = audit_row.map([1, 2]);
        let free = unlimited.map([1, 2, 3, 4]);
        total_of((written, audited, free))
    }
}

#[task]
fn total_of(parts: (Vec<u64>, Vec<u64>, Vec<u64>)) -> u64 {
    parts.0.iter().chain(&parts.1).chain(&parts.2).sum()
}

#[tokio::test(start_paused = true)]
async fn a_tag_limit_caps_concurrent_runs_across_tasks_and_mapped_children() {
    let start = Instant::now();
    let run = database()
        .executor(LocalExecutor::new().tag_limit("db", 2))
        .run()
        .await;
    assert_eq!(run.output(), Ok(&(21 + 3 + 10)));
    assert_eq!(
        DB_MAX.load(Ordering::SeqCst),
        2,
        "never more than 2 runs tagged db at once"
    );
    assert_eq!(
        FREE_MAX.load(Ordering::SeqCst),
        4,
        "untagged runs are not held back"
    );
    // 8 runs tagged db, 2 at a time, 1 s each.
    assert_eq!(start.elapsed(), Duration::from_secs(4));
}

// ---- the task context, parameters and secrets ----

const TOKEN: &str = "s3cr3t-t0ken-value";

static SCHEDULED: std::sync::Mutex<Option<std::time::SystemTime>> = std::sync::Mutex::new(None);

#[task]
fn describe_run(label: String, ctx: &TaskContext) -> String {
    *SCHEDULED.lock().unwrap() = Some(ctx.scheduled_start());
    let rows: u64 = ctx.param("rows").unwrap_or(0);
    format!(
        "{} {} {} attempt {} rows {} label {label} params {}",
        ctx.flow_name(),
        ctx.task_name(),
        ctx.full_name(),
        ctx.attempt(),
        rows,
        serde_json::Value::Object(ctx.parameters().clone())
    )
}

#[task]
fn use_secret(ctx: &TaskContext) -> Result<u8, TaskError> {
    let token = ctx
        .secret("TIDEFLOW_TEST_TOKEN")
        .map_err(|e| TaskError::fail(e.to_string()))?;
    assert_eq!(token.expose(), TOKEN, "the task can read the secret");
    tracing::info!(%token, ?token, "calling the API with {token}");
    Err(TaskError::fail(format!("the API refused token {token}")))
}

#[task]
fn missing_secret(ctx: &TaskContext) -> Result<u8, TaskError> {
    let token = ctx
        .secret("TIDEFLOW_TEST_NOT_SET")
        .map_err(|e| TaskError::fail(e.to_string()))?;
    Ok(token.expose().len() as u8)
}

flow! {
    fn with_context(rows: u64 = 10, label: String = "daily".into()) -> Vec<String> {
        describe_run.map(["daily".to_owned()])
    }

    fn with_secret() {
        use_secret();
        missing_secret();
    }
}

#[tokio::test(start_paused = true)]
async fn the_task_context_carries_names_attempt_schedule_and_parameters() {
    let before = std::time::SystemTime::now();
    let run = with_context().with_param("rows", 25).unwrap().run().await;
    assert_eq!(
        run.output().map(|v| v[0].clone()),
        Ok(r#"with_context describe_run describe_run[0] attempt 1 rows 25 label daily params {"label":"daily","rows":25}"#.to_owned())
    );
    let scheduled = SCHEDULED.lock().unwrap().expect("the task ran");
    assert!(scheduled >= before && scheduled <= std::time::SystemTime::now());
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_secret_never_reaches_a_log_line_or_an_error_message() {
    use tracing::instrument::WithSubscriber as _;
    std::env::set_var("TIDEFLOW_TEST_TOKEN", TOKEN);
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let run = with_secret().run().with_subscriber(subscriber).await;

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("calling the API with ***"), "{logged}");
    assert!(logged.contains("token=***"), "{logged}");
    assert!(
        !logged.contains(TOKEN),
        "the secret leaked into the logs:\n{logged}"
    );

    let used = run.task("use_secret");
    assert_eq!(
        used.state(),
        &State::Failed {
            message: "the API refused token ***".into()
        }
    );
    let error = run.output().map(|_| ()).unwrap_err().to_string();
    assert!(!error.contains(TOKEN), "{error}");
    assert_eq!(
        run.task("missing_secret").state().message(),
        Some(
            "secret `TIDEFLOW_TEST_NOT_SET` is not set: set the environment variable `TIDEFLOW_TEST_NOT_SET`"
        )
    );
    assert!(format!("{:?}", tideflow::Secret::new(TOKEN)) == "***");
}
