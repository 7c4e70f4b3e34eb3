//! The run history (`tideflow::history`): what a recorded run leaves in SQLite, and a
//! program killed mid-run (SIGKILL) whose run the next program marks `Crashed`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tideflow::history::{History, HistoryLayer, RunFilter};
use tideflow::prelude::*;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

/// Doubles; element 3 fails its first attempt. Logs each attempt.
#[task(max_retries = 2, retry_delay = "10ms")]
fn flaky(x: u64, ctx: &TaskContext) -> Result<u64, TaskError> {
    tracing::info!(element = x, "attempt {}", ctx.attempt());
    if x == 3 && ctx.attempt() == 1 {
        return Err(TaskError::fail("not yet"));
    }
    Ok(x * 2)
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
fn sleepy(x: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(60));
    x
}

flow! {
    /// Doubles a few numbers, one of them on its second attempt.
    fn recorded(n: u64 = 5) -> u64 {
        let ns = numbers(n);
        let doubled = flaky.map(ns);
        total(doubled)
    }

    /// Sleeps a minute: killed before it ends.
    fn long_one(x: u64 = 7) -> u64 {
        let slept = sleepy(x);
        total_of_one(slept)
    }
}

#[task]
fn total_of_one(x: u64) -> u64 {
    x
}

fn install_layer() {
    let _ = tracing_subscriber::registry()
        .with(HistoryLayer::new())
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_leaves_its_task_runs_events_and_logs() {
    // The one test here that points the log layer at its history.
    install_layer();
    let home = tempfile::tempdir().expect("a folder");
    let history = History::open_in(home.path()).expect("a history");
    history.capture_logs();
    let flow = history.record(recorded().with_param("n", 5).expect("a parameter"));
    let run = flow.run().await;
    assert_eq!(run.output(), Ok(&20));
    assert!(history.wait(run.id()));
    let id = run.id().to_string();

    let runs = history.runs(&RunFilter::default()).expect("read");
    assert_eq!(runs.len(), 1);
    let record = &runs[0];
    assert_eq!(
        (record.id.as_str(), record.flow.as_str(), record.state.as_str()),
        (id.as_str(), "recorded", "Success")
    );
    assert_eq!(record.parameters, serde_json::json!({"n": 5}));
    assert_eq!(record.version.len(), 16);
    assert_eq!(record.pid, std::process::id());
    assert!(record.started_at.is_some() && record.ended_at >= record.started_at);

    // Every task run and child, with its attempts.
    let tasks = history.task_runs(&id).expect("read");
    let rows: Vec<(String, &str, u32)> = tasks
        .iter()
        .map(|t| (t.name(), t.state.as_str(), t.attempts))
        .collect();
    assert_eq!(
        rows,
        [
            ("ns".to_owned(), "Success", 1),
            ("doubled".to_owned(), "Mapped", 0),
            ("doubled[0]".to_owned(), "Success", 1),
            ("doubled[1]".to_owned(), "Success", 1),
            ("doubled[2]".to_owned(), "Success", 1),
            ("doubled[3]".to_owned(), "Success", 2),
            ("doubled[4]".to_owned(), "Success", 1),
            ("total".to_owned(), "Success", 1),
        ]
    );

    // Each task run's task (function), beside its name in the flow.
    let functions: Vec<(&str, Option<&str>)> = tasks
        .iter()
        .filter(|t| t.map_index.is_none())
        .map(|t| (t.task.as_str(), t.function.as_deref()))
        .collect();
    assert_eq!(
        functions,
        [
            ("ns", Some("numbers")),
            ("doubled", Some("flaky")),
            ("total", Some("total"))
        ]
    );

    // The retried child's state events, in order.
    let events = history.events(&id).expect("read");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=events.len() as u64).collect::<Vec<_>>()
    );
    let child: Vec<(u32, &str, &str)> = events
        .iter()
        .filter(|e| e.node == Some(1) && e.map_index == Some(3))
        .map(|e| (e.attempt, e.old.as_str(), e.new.as_str()))
        .collect();
    assert_eq!(
        child,
        [
            (1, "Pending", "Running"),
            (1, "Running", "Failed"),
            (1, "Failed", "Retrying"),
            (2, "Retrying", "Running"),
            (2, "Running", "Success")
        ]
    );
    let flow_events: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.node.is_none())
        .map(|e| (e.old.as_str(), e.new.as_str()))
        .collect();
    assert_eq!(flow_events, [("Pending", "Running"), ("Running", "Success")]);

    // The child's log lines, each under its attempt.
    let lines = history.logs(&id, Some(("doubled", Some(3))), 0).expect("read");
    let body: Vec<(Option<u32>, &str, Option<&str>)> = lines
        .iter()
        .filter(|l| l.message.starts_with("attempt "))
        .map(|l| (l.attempt, l.message.as_str(), l.fields.as_deref()))
        .collect();
    assert_eq!(
        body,
        [
            (Some(1), "attempt 1", Some("{\"element\":3}")),
            (Some(2), "attempt 2", Some("{\"element\":3}"))
        ]
    );
    assert!(lines
        .iter()
        .all(|l| l.task.as_deref() == Some("doubled") && l.map_index == Some(3)));
    history.close();
}

/// Run as a child process by the test below: records `long_one` in the history at
/// `HISTORY_TEST_HOME` and is killed while `sleepy` sleeps.
#[test]
fn child_program() {
    let Some(home) = std::env::var_os("HISTORY_TEST_HOME") else {
        return;
    };
    let history = History::open_in(Path::new(&home)).expect("a history");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let flow = history.record(long_one());
    let _ = runtime.block_on(flow.run());
    unreachable!("killed before the run ends");
}

/// The newest run in the history in `home`, once its task `task` is running (30 s at
/// most).
fn newest_run_with_task_running(home: &Path, task: &str) -> tideflow::history::RunRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no run reached `{task}`");
        std::thread::sleep(Duration::from_millis(50));
        let Ok(history) = History::open_in(home) else {
            continue;
        };
        let Some(run) = history
            .runs(&RunFilter::default())
            .expect("read")
            .into_iter()
            .next()
        else {
            continue;
        };
        let tasks = history.task_runs(&run.id).expect("read");
        if tasks.iter().any(|t| t.task == task && t.state == "Running") {
            return run;
        }
    }
}

#[test]
fn a_program_killed_mid_run_leaves_it_crashed_for_the_next_one() {
    let home = tempfile::tempdir().expect("a folder");
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["child_program", "--exact", "--nocapture"])
        .env("HISTORY_TEST_HOME", home.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("the child starts");

    // Wait until the child's run is in the history with `sleepy` running: the program
    // is alive, and opening the history left its run alone.
    let run = newest_run_with_task_running(home.path(), "slept");
    assert_eq!(run.state, "Running");
    assert_eq!(run.ended_at, None);
    let id = run.id;
    // Opened once more while it runs: still left alone.
    let history = History::open_in(home.path()).expect("a history");
    assert_eq!(history.run(&id).expect("the run").state, "Running");
    drop(history);

    child.kill().expect("SIGKILL");
    let status = child.wait().expect("it ended");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));

    let history = History::open_in(home.path()).expect("a history");
    let run = history.run(&id).expect("the run");
    assert_eq!(run.state, "Crashed");
    let events = history.events(&id).expect("read");
    let last = events.last().expect("events").at;
    assert_eq!(run.ended_at, Some(last), "ended at its last event");
    let message = run.message.expect("a message");
    assert!(
        message.starts_with(&format!("its program (pid {} on ", child.id())),
        "{message}"
    );
    let tasks = history.task_runs(&id).expect("read");
    let states: Vec<(&str, &str)> = tasks
        .iter()
        .map(|t| (t.task.as_str(), t.state.as_str()))
        .collect();
    assert_eq!(states, [("slept", "Crashed")]);
}

/// Appends `what` to the file `calls` in `TIDEFLOW_HOME`.
fn called(what: &str) {
    use std::io::Write as _;
    let home = std::env::var_os("TIDEFLOW_HOME").expect("TIDEFLOW_HOME");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(&home).join("calls"))
        .expect("the calls file");
    let _ = writeln!(f, "{what}");
}

/// Its result is persisted: a restart does not run it again.
#[task(persist)]
fn first(x: u64) -> u64 {
    called("first");
    x * 10
}

/// Waits while the file `block` is in `TIDEFLOW_HOME` (the test kills it there).
#[task]
fn second(y: u64) -> u64 {
    called("second");
    let home = std::env::var_os("TIDEFLOW_HOME").expect("TIDEFLOW_HOME");
    while Path::new(&home).join("block").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    y + 1
}

flow! {
    /// Two steps, the first persisted.
    fn resumable(x: u64 = 4) -> u64 {
        let a = first(x);
        second(a)
    }
}

/// Run as a child process by the test below: this test binary as a CLI program, with
/// the arguments in `HISTORY_TEST_CLI` (space-separated).
#[test]
fn child_cli() {
    let Some(args) = std::env::var_os("HISTORY_TEST_CLI") else {
        return;
    };
    let args = args.to_string_lossy().into_owned();
    let code = tideflow::cli::run(std::iter::once("history_test").chain(args.split(' ')));
    let status = (0..=255u8)
        .find(|&c| std::process::ExitCode::from(c) == code)
        .unwrap_or(255);
    std::process::exit(i32::from(status));
}

fn cli_child(home: &Path, args: &str) -> std::process::Child {
    Command::new(std::env::current_exe().expect("this test binary"))
        .args(["child_cli", "--exact", "--nocapture"])
        .env("HISTORY_TEST_CLI", args)
        .env("TIDEFLOW_HOME", home)
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts")
}

#[test]
fn a_crashed_run_restarts_under_its_id_and_runs_only_what_did_not_finish() {
    let home = tempfile::tempdir().expect("a folder");
    let home = home.path();
    std::fs::write(home.join("block"), "").expect("written");
    let mut child = cli_child(home, "run resumable");
    let id = newest_run_with_task_running(home, "second").id;
    child.kill().expect("SIGKILL");
    child.wait().expect("it ended");
    std::fs::remove_file(home.join("block")).expect("removed");

    // The next command marks it Crashed; `restart` resumes it.
    let out = cli_child(home, &format!("restart {}", &id[..8]))
        .wait_with_output()
        .expect("it ran");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(home.join("calls")).expect("calls"),
        "first\nsecond\nsecond\n",
        "`first` was persisted: it did not run again"
    );
    let history = History::open_in(home).expect("a history");
    let runs = history.runs(&RunFilter::default()).expect("read");
    assert_eq!(runs.len(), 1, "the same run, under its id");
    assert_eq!(
        (runs[0].id.as_str(), runs[0].state.as_str()),
        (id.as_str(), "Success")
    );
    let tasks = history.task_runs(&id).expect("read");
    let states: Vec<(&str, &str)> = tasks
        .iter()
        .map(|t| (t.task.as_str(), t.state.as_str()))
        .collect();
    assert_eq!(states[1], ("second", "Success"));
    // Its events: the first program's, then the restart's, numbered on.
    let events = history.events(&id).expect("read");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=events.len() as u64).collect::<Vec<_>>()
    );
    let flow: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.node.is_none())
        .map(|e| (e.old.as_str(), e.new.as_str()))
        .collect();
    assert_eq!(
        flow,
        [
            ("Pending", "Running"),
            ("Pending", "Running"),
            ("Running", "Success")
        ]
    );

    // A run that did not persist anything cannot be restarted: one line, exit 2.
    let out = cli_child(home, "run recorded")
        .wait_with_output()
        .expect("it ran");
    assert_eq!(out.status.code(), Some(0));
    let other = history
        .runs(&RunFilter {
            flow: Some("recorded".into()),
            ..RunFilter::default()
        })
        .expect("read");
    let out = cli_child(home, &format!("restart {}", other[0].id))
        .wait_with_output()
        .expect("it ran");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("only runs of flows with persisted results can be restarted (`#[task(persist)]`)"),
        "{stderr}"
    );
}

flow! {
    /// Run as a subflow of `outer`.
    fn inner(x: u64 = 1) -> u64 {
        total_of_one(x)
    }

    /// Runs `inner` as its first task.
    fn outer(x: u64 = 2) -> u64 {
        let y = inner(x);
        total_of_one(y)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subflows_run_is_recorded_under_its_parents_task_run() {
    let home = tempfile::tempdir().expect("a folder");
    let history = History::open_in(home.path()).expect("a history");
    let run = history.record(outer()).run().await;
    assert_eq!(run.output(), Ok(&2));
    assert!(history.wait(run.id()));
    let runs = history.runs(&RunFilter::default()).expect("read");
    let names: Vec<(&str, &str, Option<&str>)> = runs
        .iter()
        .map(|r| (r.flow.as_str(), r.state.as_str(), r.parent.as_deref()))
        .collect();
    let parent_task = format!("{}-0", run.id());
    assert_eq!(
        names,
        [
            ("inner", "Success", Some(parent_task.as_str())),
            ("outer", "Success", None)
        ]
    );
    history.close();
}
