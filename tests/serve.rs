//! `serve`: flows run at their schedules' slots, each slot once, recorded in the history
//! before it starts; missed slots, concurrency limits, runs asked for by hand, and
//! stopping with a grace period. On tokio's paused clock where the behaviour is the
//! schedule's, and with real processes (SIGKILL, SIGTERM) where it is the program's.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tideflow::history::{History, NewRun, RunFilter, RunRecord, Trigger};
use tideflow::prelude::*;
use tideflow::schedule::Timestamp;
use tideflow::serve::{Clock, Serve};

#[task]
fn tick(n: u64) -> u64 {
    n + 1
}

#[task]
async fn nap(secs: u64) -> u64 {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    secs
}

#[task]
async fn nap_ms(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

flow! {
    /// Every second, a quick run.
    #[schedule(every = "1s")]
    fn every_second(n: u64 = 1) -> u64 {
        tick(n)
    }

    /// Every second, and catches up the slots missed while no serve ran.
    #[schedule(every = "1s")]
    #[serve(missed = "all")]
    fn catch_up(n: u64 = 1) -> u64 {
        tick(n)
    }

    /// Every second, runs only the latest missed slot.
    #[schedule(every = "1s")]
    #[serve(missed = "latest")]
    fn latest_only(n: u64 = 1) -> u64 {
        tick(n)
    }

    /// Runs of 2.5 s every second, one at a time; the slots that find one running are skipped.
    #[schedule(every = "1s", params(ms = 2500))]
    #[serve(max_running = 1, when_busy = "skip")]
    fn one_at_a_time(ms: u64) -> u64 {
        nap_ms(ms)
    }

    /// Runs of 2.5 s every second, one at a time; the others wait their turn.
    #[schedule(every = "1s", params(ms = 2500))]
    #[serve(max_running = 1)]
    fn queued(ms: u64) -> u64 {
        nap_ms(ms)
    }

    /// A run of `secs` seconds every hour, one at a time, nothing missed made up.
    #[schedule(every = "1h")]
    #[serve(max_running = 1, when_busy = "skip")]
    fn slow(secs: u64 = 3) -> u64 {
        nap(secs)
    }

    /// Every second; its third run has another program lock the history.
    #[schedule(every = "1s")]
    fn locked_out(n: u64 = 1) -> u64 {
        third_locks(n)
    }

    /// Twice: every 2 s with n = 10, and every 3 s from an anchor with n = 20.
    #[schedule(every = "2s", params(n = 10))]
    #[schedule(every = "3s", from = "2026-11-29T02:00:01Z", params(n = 20))]
    fn two_schedules(n: u64) -> u64 {
        tick(n)
    }
}

/// Runs of `third_locks` so far, and the program that locks the history at the third.
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
#[allow(clippy::type_complexity)]
static LOCKER: std::sync::Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>> =
    std::sync::Mutex::new(None);

/// The third run asks the locker to lock the history, and goes on once it has.
#[task]
fn third_locks(n: u64) -> u64 {
    if RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
        if let Some((ask, locked)) = LOCKER.lock().expect("not poisoned").take() {
            ask.send(()).expect("the locker waits");
            locked.recv().expect("locked");
        }
    }
    n
}

fn at(text: &str) -> Timestamp {
    text.parse().expect("a time")
}

fn seconds(text: &str) -> f64 {
    at(text).as_second() as f64
}

fn runs_of(history: &History, flow: &str) -> Vec<RunRecord> {
    let mut runs = history
        .runs(&RunFilter {
            flow: Some(flow.to_owned()),
            ..RunFilter::default()
        })
        .expect("runs");
    runs.sort_by(|a, b| a.scheduled_for.partial_cmp(&b.scheduled_for).expect("times"));
    runs
}

/// (slot as seconds after 02:00:00, state) of each run of `flow`.
fn slots(history: &History, flow: &str) -> Vec<(f64, String)> {
    let base = seconds("2026-11-29T02:00:00Z");
    runs_of(history, flow)
        .into_iter()
        .map(|r| (r.scheduled_for.expect("a slot") - base, r.state))
        .collect()
}

fn success(range: std::ops::RangeInclusive<u32>) -> Vec<(f64, String)> {
    range.map(|s| (f64::from(s), "Success".to_owned())).collect()
}

/// Serves `flow` on the paused clock from `start` for `secs` seconds.
async fn serve_for(
    history: &Arc<History>,
    flow: impl Into<tideflow::DynFlow>,
    start: &str,
    secs: f64,
) -> tideflow::serve::ServeReport {
    Serve::new(Arc::clone(history))
        .flow(flow)
        .clock(Clock::tokio(at(start)))
        .run_until(tokio::time::sleep(Duration::from_secs_f64(secs)))
        .await
        .expect("serve")
}

fn history() -> (tempfile::TempDir, Arc<History>) {
    let dir = tempfile::tempdir().expect("a folder");
    let history = Arc::new(History::open_in(dir.path()).expect("a history"));
    (dir, history)
}

#[tokio::test(start_paused = true)]
async fn a_one_second_interval_over_ten_seconds_runs_exactly_its_ten_slots() {
    let (_dir, history) = history();
    let report = serve_for(&history, every_second(), "2026-11-29T02:00:00.500Z", 10.0).await;
    assert_eq!(report.finished.len(), 10);
    assert_eq!(report.left, 0);
    assert_eq!(slots(&history, "every_second"), success(1..=10));
    let runs = runs_of(&history, "every_second");
    for run in &runs {
        assert_eq!(run.trigger.as_deref(), Some("schedule"));
        assert_eq!(run.schedule.as_deref(), Some("every 1s"));
        assert_eq!(run.parameters, serde_json::json!({ "n": 1 }));
        assert!(!run.version.is_empty());
    }
    // Each run's id is the one recorded before it started: its task runs are under it.
    let tasks = history.task_runs(&runs[0].id).expect("task runs");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state, "Success");
}

#[tokio::test(start_paused = true)]
async fn each_schedule_runs_with_its_own_parameters() {
    let (_dir, history) = history();
    serve_for(&history, two_schedules(), "2026-11-29T02:00:00.500Z", 6.0).await;
    let by_schedule: Vec<(f64, serde_json::Value)> = runs_of(&history, "two_schedules")
        .into_iter()
        .map(|r| {
            (
                r.scheduled_for.expect("a slot") - seconds("2026-11-29T02:00:00Z"),
                r.parameters["n"].clone(),
            )
        })
        .collect();
    let mut expected = vec![
        (2.0, serde_json::json!(10)),
        (4.0, serde_json::json!(10)),
        (6.0, serde_json::json!(10)),
        (1.0, serde_json::json!(20)),
        (4.0, serde_json::json!(20)),
    ];
    expected.sort_by(|a, b| a.0.partial_cmp(&b.0).expect("times"));
    let mut got = by_schedule;
    got.sort_by(|a, b| {
        (a.0, a.1.as_u64())
            .partial_cmp(&(b.0, b.1.as_u64()))
            .expect("comparable")
    });
    assert_eq!(got, expected);
}

/// Serves `flow` from 02:00:00.5 to 02:00:03.5, then (no serve from 02:00:03.5 to
/// 02:00:08.5: slots 4 to 8 are missed) from 02:00:08.5 to 02:00:10.5; its slots.
async fn served_with_a_gap(history: &Arc<History>, flow: fn() -> Flow<u64>) -> Vec<(f64, String)> {
    serve_for(history, flow(), "2026-11-29T02:00:00.500Z", 3.0).await;
    serve_for(history, flow(), "2026-11-29T02:00:08.500Z", 2.0).await;
    let name = flow().name();
    slots(history, name)
}

#[tokio::test(start_paused = true)]
async fn slots_missed_while_no_serve_ran_are_skipped_by_default() {
    let (_dir, history) = history();
    assert_eq!(
        served_with_a_gap(&history, every_second).await,
        [success(1..=3), success(9..=10)].concat()
    );
}

#[tokio::test(start_paused = true)]
async fn missed_all_catches_up_every_slot_and_latest_only_the_last() {
    let (_dir, history) = history();
    assert_eq!(served_with_a_gap(&history, catch_up).await, success(1..=10));
    assert_eq!(
        served_with_a_gap(&history, latest_only).await,
        [success(1..=3), success(8..=10)].concat()
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_flow_skips_its_slots_when_told_to() {
    let (_dir, history) = history();
    let report = serve_for(&history, one_at_a_time(), "2026-11-29T02:00:00.500Z", 10.0).await;
    // Runs take 2.5 s: slots 1, 4, 7 and 10 run (the last finishes in the grace period);
    // the others are recorded `Skipped`.
    let skipped = |s: u32| (f64::from(s), "Skipped".to_owned());
    assert_eq!(
        slots(&history, "one_at_a_time"),
        [
            success(1..=1),
            vec![skipped(2), skipped(3)],
            success(4..=4),
            vec![skipped(5), skipped(6)],
            success(7..=7),
            vec![skipped(8), skipped(9)],
            success(10..=10),
        ]
        .concat()
    );
    assert_eq!(report.finished.len(), 4);
    let skipped_run = &runs_of(&history, "one_at_a_time")[1];
    assert_eq!(
        skipped_run.message.as_deref(),
        Some("not run: 1 run(s) of one_at_a_time were running (max_running = 1, when_busy = \"skip\")")
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_flow_queues_its_runs_and_the_next_serve_runs_those_left() {
    let (_dir, history) = history();
    let report = serve_for(&history, queued(), "2026-11-29T02:00:00.500Z", 10.0).await;
    // One at a time, 2.5 s each, from 02:00:01: slots 1-3 end by 02:00:08.5, slot 4 runs
    // at the stop (and ends in the grace period); slots 5-10 never started.
    assert_eq!(report.finished.len(), 4);
    assert_eq!(report.left, 6);
    let scheduled = |s: u32| (f64::from(s), "Scheduled".to_owned());
    assert_eq!(
        slots(&history, "queued"),
        [success(1..=4), (5..=10).map(scheduled).collect()].concat()
    );
    // The next serve runs them, one at a time, before its own slots.
    let report = serve_for(&history, queued(), "2026-11-29T02:01:00.500Z", 1.0).await;
    assert_eq!(
        report.finished.len(),
        1,
        "one at a time: slot 5 ran, the rest wait"
    );
    assert_eq!(report.left, 5 + 1, "slots 6-10 and the new slot at 02:01:01");
    let runs = runs_of(&history, "queued");
    assert_eq!(runs[4].state, "Success");
}

#[tokio::test(start_paused = true)]
async fn running_runs_finish_within_the_grace_period_or_are_cancelled() {
    let (_dir, history) = history();
    // A slot at 02:00:00 (the hour); the run naps 3 s; serve is stopped at 1 s.
    let report = Serve::new(Arc::clone(&history))
        .flow(slow())
        .clock(Clock::tokio(at("2026-11-29T01:59:59.500Z")))
        .grace(Duration::from_secs(5))
        .run_until(tokio::time::sleep(Duration::from_millis(1500)))
        .await
        .expect("serve");
    assert_eq!(report.finished.len(), 1);
    assert_eq!(report.finished[0].state, "Success");
    assert_eq!(slots(&history, "slow"), success(0..=0));

    let (_dir2, history) = self::history();
    let report = Serve::new(Arc::clone(&history))
        .flow(slow())
        .clock(Clock::tokio(at("2026-11-29T01:59:59.500Z")))
        .grace(Duration::from_secs(1))
        .run_until(tokio::time::sleep(Duration::from_millis(1500)))
        .await
        .expect("serve");
    assert_eq!(report.finished[0].state, "Cancelled");
    assert_eq!(slots(&history, "slow"), vec![(0.0, "Cancelled".to_owned())]);
    let tasks = history
        .task_runs(&report.finished[0].id.to_string())
        .expect("task runs");
    assert_eq!(tasks[0].state, "Cancelled");
}

#[tokio::test(start_paused = true)]
async fn a_run_asked_for_by_hand_is_run_by_the_serve_of_its_flow() {
    let (_dir, history) = history();
    let id = history
        .request_run(&NewRun {
            flow: "slow",
            description: "",
            version: "v",
            parameters: &serde_json::json!({ "secs": 1 }),
            schedule: None,
            scheduled_for: seconds("2026-11-29T01:00:00Z"),
            trigger: Trigger::Manual,
        })
        .expect("asked");
    let report = serve_for(&history, slow(), "2026-11-29T01:10:00Z", 2.5).await;
    assert_eq!(report.finished.len(), 1);
    assert_eq!(report.finished[0].id, id);
    let run = history.run(&id.to_string()).expect("the run");
    assert_eq!(run.state, "Success");
    assert_eq!(run.trigger.as_deref(), Some("manual"));
    assert_eq!(run.parameters, serde_json::json!({ "secs": 1 }));
    let tasks = history.task_runs(&id.to_string()).expect("task runs");
    assert_eq!(tasks[0].state, "Success");
}

#[tokio::test(start_paused = true)]
async fn a_schedule_parameter_that_does_not_fit_stops_serve_before_anything_runs() {
    let (_dir, history) = history();
    let flow = every_second().with_schedules(vec![tideflow::schedule::ScheduledRun::new(
        tideflow::schedule::Schedule::parse("every 1s").expect("a schedule"),
    )
    .param("n", serde_json::json!("three"))]);
    let err = Serve::new(Arc::clone(&history))
        .flow(flow)
        .clock(Clock::tokio(at("2026-11-29T02:00:00Z")))
        .run_until(tokio::time::sleep(Duration::from_secs(3)))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().starts_with(
            "the schedule `every 1s {\"n\":\"three\"}` of flow `every_second` cannot run: parameter `n`"
        ),
        "{err}"
    );
    assert!(runs_of(&history, "every_second").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_history_locked_by_another_program_delays_slots_and_loses_none() {
    let (dir, history) = history();
    let path = dir.path().join("tideflow.db");
    let (ask_tx, ask_rx) = std::sync::mpsc::channel();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    *LOCKER.lock().expect("not poisoned") = Some((ask_tx, locked_rx));
    // Another program: asked, it holds the history's write lock for 7 s (past the 5 s
    // SQLite waits), while serve has slots to record.
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).expect("opens");
        ask_rx.recv().expect("asked");
        conn.execute_batch("BEGIN IMMEDIATE").expect("locks");
        locked_tx.send(()).expect("told");
        std::thread::sleep(Duration::from_secs(7));
        conn.execute_batch("COMMIT").expect("unlocks");
    });
    serve_for(&history, locked_out(), "2026-11-29T02:00:00.500Z", 10.0).await;
    locker.join().expect("the locker ends");
    assert_eq!(RUNS.load(std::sync::atomic::Ordering::SeqCst), 10);
    assert_eq!(slots(&history, "locked_out"), success(1..=10));
}

#[tokio::test(start_paused = true)]
async fn serve_marks_crashed_the_runs_of_programs_that_died_while_it_ran() {
    let (dir, history) = history();
    // A run another program left open: its process has ended.
    let mut gone = Command::new("true").spawn().expect("a process");
    let pid = gone.id();
    gone.wait().expect("it ends");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("the host's name");
    let conn = rusqlite::Connection::open(dir.path().join("tideflow.db")).expect("opens");
    conn.execute(
        "INSERT INTO flow_run (id, flow, version, parameters, state, created_at, started_at, last_event_at, pid, \
         pid_started, host, heartbeat_at) VALUES ('8f1d0c2a-0000-4000-8000-000000000001', 'other', 'v', '{}', \
         'Running', 1, 1, 1, ?1, 12345, ?2, 1)",
        rusqlite::params![pid, host.trim()],
    )
    .expect("a run");
    serve_for(&history, every_second(), "2026-11-29T02:00:00.500Z", 11.0).await;
    let run = history
        .run("8f1d0c2a-0000-4000-8000-000000000001")
        .expect("the run");
    assert_eq!(run.state, "Crashed");
    assert!(run
        .message
        .expect("why")
        .starts_with(&format!("its program (pid {pid} on ")));
}

// ---- Real processes: this test binary as a program whose `main` is the CLI. ----

/// Runs the CLI in this process when `SERVE_TEST_CLI` holds its arguments (separated by
/// `\u{1f}`), then exits with its code.
#[test]
fn child_cli() {
    let Some(args) = std::env::var_os("SERVE_TEST_CLI") else {
        return;
    };
    let args = args.to_string_lossy().into_owned();
    let code = tideflow::cli::run(std::iter::once("serve_test").chain(args.split('\u{1f}')));
    let status = (0..=255u8)
        .find(|&c| std::process::ExitCode::from(c) == code)
        .unwrap_or(255);
    std::process::exit(i32::from(status));
}

/// Runs the CLI of this test binary with `args` (a `serve` without its dashboard).
fn spawn_cli(home: &Path, args: &[&str]) -> Child {
    let mut args = args.to_vec();
    if args.first() == Some(&"serve") {
        args.push("--no-ui");
    }
    Command::new(std::env::current_exe().expect("this test binary"))
        .args(["child_cli", "--exact", "--nocapture"])
        .env("SERVE_TEST_CLI", args.join("\u{1f}"))
        .env("TIDEFLOW_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts")
}

/// Waits (20 s at most) until `done` holds of the history.
fn wait_for(home: &Path, what: &str, mut done: impl FnMut(&History) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(history) = History::open_in(home) {
            if done(&history) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(history: &History, flow: &str, state: &str) -> usize {
    runs_of(history, flow).iter().filter(|r| r.state == state).count()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

fn stderr_of(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().expect("the child ends");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_serve_killed_and_restarted_runs_no_slot_twice_and_forgets_none() {
    let dir = tempfile::tempdir().expect("a folder");
    let home = dir.path();
    let args = ["serve", "--flow", "catch_up"];
    let mut first = spawn_cli(home, &args);
    wait_for(home, "3 runs", |h| count(h, "catch_up", "Success") >= 3);
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    // Down for 2 s: missed = "all" makes them up.
    std::thread::sleep(Duration::from_secs(2));
    let before = History::open_in(home)
        .map(|h| runs_of(&h, "catch_up").len())
        .expect("a history");
    let second = spawn_cli(home, &args);
    wait_for(home, "4 more runs", |h| {
        count(h, "catch_up", "Success") >= before + 4
    });
    sigterm(&second);
    let (status, stderr) = stderr_of(second);
    assert!(status.success(), "{stderr}");

    let history = History::open_in(home).expect("a history");
    let runs = runs_of(&history, "catch_up");
    let slots: Vec<f64> = runs.iter().map(|r| r.scheduled_for.expect("a slot")).collect();
    // One run per slot, every second from the first to the last: none twice, none lost.
    for pair in slots.windows(2) {
        assert_eq!(pair[1] - pair[0], 1.0, "slots {slots:?}");
    }
    // A run killed mid-way is `Crashed` (and not run again); every other one succeeded.
    let crashed = runs.iter().filter(|r| r.state == "Crashed").count();
    assert!(crashed <= 1, "{runs:?}");
    assert_eq!(
        runs.iter().filter(|r| r.state == "Success").count(),
        runs.len() - crashed,
        "{runs:?}"
    );
}

fn started_slow(home: &Path) {
    wait_for(home, "the run to start", |h| {
        runs_of(h, "slow").iter().any(|r| r.state == "Running")
    });
}

#[test]
fn sigterm_lets_a_run_finish_within_the_grace_period() {
    let dir = tempfile::tempdir().expect("a folder");
    let home = dir.path();
    let child = spawn_cli(
        home,
        &[
            "serve",
            "--flow",
            "slow",
            "--schedule",
            "slow=every 1h from 2026-01-01T00:00:00Z until 2026-01-01T00:00:00Z",
            "--grace",
            "20s",
        ],
    );
    // The schedule's one slot has passed: ask for a run by hand instead, through the CLI.
    wait_for(home, "the serve", |h| {
        !h.live_servers("slow").expect("servers").is_empty()
    });
    let asked = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["child_cli", "--exact", "--nocapture"])
        .env(
            "SERVE_TEST_CLI",
            ["run", "slow", "--via-serve", "-p", "secs=2"].join("\u{1f}"),
        )
        .env("TIDEFLOW_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client starts");
    started_slow(home);
    sigterm(&child);
    let (status, stderr) = stderr_of(child);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("SIGTERM: no more runs start; waiting up to 20s for 1 running run(s) to finish"),
        "{stderr}"
    );
    assert!(
        stderr.contains("serve stopped after 1 run(s): 1 Success"),
        "{stderr}"
    );
    let out = asked.wait_with_output().expect("the client ends");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("state: Success"), "{shown}");
    assert!(shown.contains("asked for by hand at"), "{shown}");
    let history = History::open_in(home).expect("a history");
    let runs = runs_of(&history, "slow");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, "Success");
    assert_eq!(runs[0].trigger.as_deref(), Some("manual"));
    assert_eq!(runs[0].parameters, serde_json::json!({ "secs": 2 }));
}

#[test]
fn sigterm_cancels_a_run_past_the_grace_period() {
    let dir = tempfile::tempdir().expect("a folder");
    let home = dir.path();
    let child = spawn_cli(
        home,
        &[
            "serve",
            "--flow",
            "slow",
            "--schedule",
            "slow=every 1s",
            "--grace",
            "1s",
        ],
    );
    started_slow(home);
    sigterm(&child);
    let (status, stderr) = stderr_of(child);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("the grace period is over: cancelling 1 run(s)"),
        "{stderr}"
    );
    let history = History::open_in(home).expect("a history");
    let runs = runs_of(&history, "slow");
    // The first slot ran (3 s); the slots that found it running were skipped.
    let ran: Vec<&RunRecord> = runs.iter().filter(|r| r.state != "Skipped").collect();
    assert_eq!(ran.len(), 1, "{runs:?}");
    assert_eq!(ran[0].state, "Cancelled");
    let tasks = history.task_runs(&ran[0].id).expect("task runs");
    assert_eq!(tasks[0].state, "Cancelled");
}

#[test]
fn run_via_serve_without_a_serve_says_so() {
    let dir = tempfile::tempdir().expect("a folder");
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["child_cli", "--exact", "--nocapture"])
        .env("SERVE_TEST_CLI", ["run", "slow", "--via-serve"].join("\u{1f}"))
        .env("TIDEFLOW_HOME", dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: no `serve` of flow `slow` is running on the run history {}: start one (`serve`), or run the flow here without --via-serve",
            dir.path().join("tideflow.db").display()
        )),
        "{stderr}"
    );
}

#[test]
fn malformed_schedules_on_the_command_line_and_in_a_file_are_one_line_each() {
    let dir = tempfile::tempdir().expect("a folder");
    let run = |args: &[&str]| {
        let args = [args, &["--no-ui"]].concat();
        let out = Command::new(std::env::current_exe().expect("this test binary"))
            .args(["child_cli", "--exact", "--nocapture"])
            .env("SERVE_TEST_CLI", args.join("\u{1f}"))
            .env("TIDEFLOW_HOME", dir.path())
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line in {stderr}"))
            .to_owned()
    };
    assert_eq!(
        run(&["serve", "--schedule", "slow=every 2 parsecs"]),
        "error: `--schedule slow=every 2 parsecs`: malformed schedule `every 2 parsecs`: `2 parsecs` is not a \
         duration (unknown time unit \"parsecs\"): write it like `24h`, `1h30m`, `10s` or `500ms`"
    );
    assert_eq!(
        run(&["serve", "--schedule", "slow=cron 0 6 * * * in Mars/Olympus"]),
        "error: `--schedule slow=cron 0 6 * * * in Mars/Olympus`: malformed schedule `cron 0 6 * * * in \
         Mars/Olympus`: `Mars/Olympus` is not a time zone of the IANA database: write one such as `UTC`, \
         `Europe/Paris` or `America/New_York`"
    );
    assert_eq!(
        run(&["serve", "--schedule", "every 1h"]),
        "error: `--schedule every 1h`: write it as FLOW=SCHEDULE, as `--schedule 'my_flow=every 1h'`"
    );
    let file = dir.path().join("schedules.json");
    std::fs::write(
        &file,
        r#"{"slow": ["every 1h", {"schedule": "cron 61 * * * *"}]}"#,
    )
    .expect("written");
    let line = run(&["serve", "--schedules", file.to_str().expect("utf-8")]);
    assert!(
        line.starts_with(&format!(
            "error: the schedules file {}, flow `slow`, schedule 2: malformed schedule `cron 61 * * * *`: `61 * * * *` is not a cron expression: ",
            file.display()
        )),
        "{line}"
    );
    std::fs::write(
        &file,
        r#"{"slow": [{"schedule": "every 1h", "params": {"secs": "long"}}]}"#,
    )
    .expect("written");
    let line = run(&["serve", "--schedules", file.to_str().expect("utf-8")]);
    assert!(
        line.starts_with(
            "error: the schedule `every 1h {\"secs\":\"long\"}` of flow `slow` cannot run: parameter `secs`"
        ),
        "{line}"
    );
}
