//! Worker mode: this test binary serves task attempts when started as a worker (the
//! `tideflow_worker` test), and the other tests drive it as a coordinator would.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tideflow::prelude::*;
use tideflow::task_def::Task;
use tideflow::wire::{WireAttempt, WireContext, WireEnd, WireInput, WireSignal};
use tideflow::worker::frame::{self, Frame, Hello};
use tideflow::worker::{self, Reply, WorkerError, WorkerProcess};
use tideflow::TaskRunId;

/// What a coordinator starts: this binary, running only this test, serves attempts.
#[test]
fn tideflow_worker() {
    worker::serve_if_worker();
}

/// The same, entered from async code, as from a `#[tokio::main]` `main`.
#[tokio::test]
async fn tideflow_worker_async() {
    worker::serve_if_worker();
}

/// Started as a worker, greets with another build's id.
#[test]
fn fake_worker_of_another_build() {
    if !worker::is_worker() {
        return;
    }
    let mut out = std::io::stdout();
    let _ = out.write_all(frame::MAGIC);
    let hello = Hello {
        protocol: worker::PROTOCOL,
        build: "0123456789abcdef".into(),
        pid: std::process::id(),
    };
    let _ = frame::write(&mut out, &Frame::Hello(hello));
    std::process::exit(0);
}

#[task]
fn add1(x: u64) -> u64 {
    x + 1
}

#[task]
async fn double(x: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    x * 2
}

#[task]
fn boom(x: u64) -> u64 {
    panic!("no {x}")
}

#[task]
fn again(_x: u64) -> Result<u64, TaskError> {
    Err(TaskError::retry("try again"))
}

#[task]
fn shout(x: u64) -> u64 {
    println!("a task printing to standard output: {x}");
    print!("without a newline");
    x
}

#[task]
fn chatty(x: u64) -> u64 {
    tracing::info!(rows = x, "loaded {x} rows");
    tracing::debug!("not kept: below info");
    tracing::warn!("careful");
    x
}

#[task]
async fn chatty_async(x: u64) -> u64 {
    tracing::info!("before the wait");
    tokio::time::sleep(Duration::from_millis(1)).await;
    tracing::error!(x, "after the wait");
    x
}

#[task(local)]
fn local_only(x: u64) -> u64 {
    x
}

static MET: AtomicUsize = AtomicUsize::new(0);

/// Ends only once two attempts of it run at the same time (in the worker's process).
#[task]
fn meet(x: u64) -> Result<u64, TaskError> {
    MET.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while MET.load(Ordering::SeqCst) < 2 {
        if Instant::now() > deadline {
            return Err(TaskError::fail("the other attempt never ran alongside"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(x)
}

/// The name of the thread it runs on.
#[task]
fn thread_name(_x: u64) -> String {
    std::thread::current().name().unwrap_or_default().to_owned()
}

fn attempt<Tk: Task>(ticket: u32, x: u64) -> WireAttempt {
    attempt_of(ticket, Tk::DEF.key, x)
}

fn attempt_of(ticket: u32, key: &str, x: u64) -> WireAttempt {
    WireAttempt {
        ticket,
        task_key: key.to_owned(),
        inputs: vec![WireInput::Encoded(rmp_serde::to_vec(&x).expect("a u64 packs"))],
        context: WireContext {
            task_run_id: TaskRunId {
                flow_run: FlowRunId::new(),
                node: 0,
                map_index: Some(ticket),
            },
            flow: "worker_tests".into(),
            task: "t".into(),
            binding: "t".into(),
            attempt: 1,
            scheduled_start: SystemTime::now(),
            parameters: serde_json::Map::new(),
        },
        timeout: None,
        result_here: true,
        limits: Vec::new(),
    }
}

fn spawn() -> WorkerProcess {
    let exe = std::env::current_exe().expect("this test binary");
    WorkerProcess::spawn(exe, &worker::TEST_ARGS).expect("this test binary starts as a worker")
}

fn returned(reply: Reply) -> (u32, u64) {
    match reply {
        Reply::Ended(ticket, WireEnd::Returned(bytes)) => {
            (ticket, rmp_serde::from_slice(&bytes).expect("a u64"))
        }
        other => panic!("not a returned value: {other:?}"),
    }
}

use tideflow::FlowRunId;

#[test]
fn a_worker_runs_attempts_by_task_key_and_answers_in_the_wire_format() {
    let mut w = spawn();
    let hello = w.hello().clone();
    assert_eq!(hello.protocol, worker::PROTOCOL);
    assert_eq!(hello.build, worker::build_id());
    assert_ne!(hello.pid, std::process::id(), "a process of its own");

    w.send(&attempt::<add1>(1, 41)).expect("sent");
    assert_eq!(returned(w.recv().expect("a reply")), (1, 42));
    w.send(&attempt::<double>(2, 21)).expect("sent");
    assert_eq!(returned(w.recv().expect("a reply")), (2, 42));
    // What a task prints goes to standard error, not into the frames.
    w.send(&attempt::<shout>(3, 5)).expect("sent");
    assert_eq!(returned(w.recv().expect("a reply")), (3, 5));
    let status = w.close().expect("it exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_worker_entered_from_async_code_serves_too() {
    let exe = std::env::current_exe().expect("this test binary");
    let mut w = WorkerProcess::spawn(
        exe,
        &["tideflow_worker_async", "--exact", "--nocapture", "--quiet"],
    )
    .expect("starts as a worker");
    w.send(&attempt::<double>(1, 4)).expect("sent");
    assert_eq!(returned(w.recv().expect("a reply")), (1, 8));
    assert!(w.close().expect("it exits").success());
}

#[test]
fn a_sync_task_known_to_be_short_runs_on_the_thread_that_reads_the_frames() {
    let mut w = spawn();
    let names: Vec<String> = (1..=4)
        .map(|t| {
            w.send(&attempt::<thread_name>(t, 0)).expect("sent");
            let name = match w.recv().expect("a reply") {
                Reply::Ended(_, WireEnd::Returned(bytes)) => {
                    rmp_serde::from_slice::<String>(&bytes).expect("a string")
                }
                other => panic!("not returned: {other:?}"),
            };
            // The run before this one has ended on its thread too.
            std::thread::sleep(Duration::from_millis(20));
            name
        })
        .collect();
    // The first two runs go to the runtime's threads; then the task is known to be short
    // and runs where the frames are read.
    assert_eq!(names[..2], ["tideflow-worker", "tideflow-worker"], "{names:?}");
    assert!(names[2..].iter().all(|n| n != "tideflow-worker"), "{names:?}");
    assert!(w.close().expect("it exits").success());
}

#[test]
fn a_worker_runs_several_attempts_at_once() {
    let mut w = spawn();
    w.send(&attempt::<meet>(1, 10)).expect("sent");
    w.send(&attempt::<meet>(2, 20)).expect("sent");
    let mut got = vec![
        returned(w.recv().expect("a reply")),
        returned(w.recv().expect("a reply")),
    ];
    got.sort_unstable();
    assert_eq!(got, [(1, 10), (2, 20)]);
    assert!(w.close().expect("it exits").success());
}

#[test]
fn failures_panics_and_refusals_come_back_as_plain_data() {
    let mut w = spawn();
    w.send(&attempt::<boom>(1, 3)).expect("sent");
    assert_eq!(
        w.recv().expect("a reply"),
        Reply::Ended(1, WireEnd::Panicked("task panicked: no 3".into()))
    );
    w.send(&attempt::<again>(2, 3)).expect("sent");
    assert_eq!(
        w.recv().expect("a reply"),
        Reply::Ended(
            2,
            WireEnd::Failed {
                message: "try again".into(),
                signal: WireSignal::Retry,
                retry_wanted: false
            }
        )
    );
    // An unknown key is refused with a message naming both sides; the worker goes on.
    w.send(&attempt_of(3, "nowhere::missing", 1)).expect("sent");
    let Reply::Refused(refused) = w.recv().expect("a reply") else {
        panic!("an unknown task is refused");
    };
    assert_eq!(refused.ticket, Some(3));
    assert_eq!(
        refused.message,
        format!(
            "no task is registered under `nowhere::missing` in this worker (pid {}, build {}): the coordinator \
             and the worker must run the same program",
            w.hello().pid,
            worker::build_id()
        )
    );
    w.send(&attempt::<local_only>(4, 1)).expect("sent");
    assert_eq!(
        w.recv().expect("a reply"),
        Reply::Refused(tideflow::worker::frame::Refused {
            ticket: Some(4),
            message: "task `local_only` is `#[task(local)]`: it runs in the coordinator's process only"
                .into()
        })
    );
    // Bytes that are not the task's input type.
    let mut bad = attempt::<add1>(5, 1);
    bad.inputs = vec![WireInput::Encoded(rmp_serde::to_vec("forty-one").expect("packs"))];
    w.send(&bad).expect("sent");
    let Reply::Refused(refused) = w.recv().expect("a reply") else {
        panic!("an unreadable input is refused");
    };
    assert!(
        refused
            .message
            .starts_with("input `x` of task `add1` cannot be read: not a valid `u64`"),
        "{}",
        refused.message
    );
    w.send(&attempt::<add1>(6, 1)).expect("sent");
    assert_eq!(returned(w.recv().expect("a reply")), (6, 2));
    assert!(w.close().expect("it exits").success());
}

/// A worker started by hand, for frames a well-behaved coordinator never sends.
struct Raw {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

fn raw() -> (Raw, Hello) {
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(worker::TEST_ARGS)
        .env(worker::ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stdin = child.stdin.take().expect("piped");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut seen = Vec::new();
    let mut byte = [0u8];
    while !seen.ends_with(frame::MAGIC) {
        std::io::Read::read_exact(&mut stdout, &mut byte).expect("the worker greets");
        seen.push(byte[0]);
    }
    let Frame::Hello(hello) = frame::read(&mut stdout).expect("a frame") else {
        panic!("a worker says hello first");
    };
    (Raw { child, stdin, stdout }, hello)
}

fn refused_then_exit(mut r: Raw) -> (String, i32, String) {
    let Frame::Refused(refused) = frame::read(&mut r.stdout).expect("a frame") else {
        panic!("refused");
    };
    drop(r.stdin);
    let out = r.child.wait_with_output().expect("it exits");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (refused.message, out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_coordinator_of_another_protocol_is_refused_naming_both_sides() {
    let (mut r, hello) = raw();
    let theirs = Hello {
        protocol: 99,
        build: worker::build_id().to_owned(),
        pid: 4242,
    };
    frame::write(&mut r.stdin, &Frame::Hello(theirs)).expect("written");
    let (message, code, stderr) = refused_then_exit(r);
    assert_eq!(
        message,
        format!(
            "the coordinator (pid 4242, protocol 99, build {b}) does not match this worker (pid {}, protocol {}, \
             build {b}): run the same build of the program on both sides",
            hello.pid,
            worker::PROTOCOL,
            b = worker::build_id()
        )
    );
    assert_eq!(code, 2);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_malformed_frame_is_refused_and_ends_the_worker_without_a_panic() {
    let (mut r, hello) = raw();
    let mine = Hello {
        protocol: worker::PROTOCOL,
        build: worker::build_id().to_owned(),
        pid: std::process::id(),
    };
    frame::write(&mut r.stdin, &Frame::Hello(mine)).expect("written");
    r.stdin
        .write_all(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3])
        .expect("written");
    r.stdin.flush().expect("flushed");
    let (message, code, stderr) = refused_then_exit(r);
    assert_eq!(
        message,
        format!(
            "malformed frame: a frame of 2147483647 bytes (frames are 1 byte to 1073741824 bytes) from the \
             coordinator; this worker (pid {}, protocol {}, build {})",
            hello.pid,
            worker::PROTOCOL,
            worker::build_id()
        )
    );
    assert_eq!(code, 2);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_worker_of_another_build_is_refused_naming_both_sides() {
    let exe = std::env::current_exe().expect("this test binary");
    let err = WorkerProcess::spawn(
        &exe,
        &[
            "fake_worker_of_another_build",
            "--exact",
            "--nocapture",
            "--quiet",
        ],
    )
    .expect_err("another build");
    assert!(matches!(err, WorkerError::Mismatch { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.ends_with(&format!(
            "(pid {pid}, protocol {p}, build 0123456789abcdef) does not match this coordinator (protocol {p}, \
             build {b}): run the same build of the program on both sides",
            pid = match &err {
                WorkerError::Mismatch { pid, .. } => *pid,
                _ => 0,
            },
            p = worker::PROTOCOL,
            b = worker::build_id()
        )),
        "{message}"
    );
}

#[test]
fn a_program_that_is_not_a_worker_is_named() {
    let exe = std::env::current_exe().expect("this test binary");
    let err = WorkerProcess::spawn(&exe, &["no_such_test", "--exact"]).expect_err("not a worker");
    let WorkerError::NotAWorker { seen, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(seen.contains("running 0 tests"), "{seen}");
    assert!(err
        .to_string()
        .contains("must call `tideflow::worker::serve_if_worker()` first"));
}

#[test]
fn what_a_task_logs_comes_back_before_its_end() {
    use tideflow::worker::frame::LogLine;
    let line = |level: u8, text: &str| LogLine {
        level,
        target: "worker".into(),
        text: text.into(),
    };
    let mut w = spawn();
    w.send(&attempt::<chatty>(1, 3)).expect("sent");
    assert_eq!(
        w.recv().expect("a reply"),
        Reply::Logs(1, vec![line(3, "loaded 3 rows rows=3"), line(2, "careful")])
    );
    assert_eq!(returned(w.recv().expect("a reply")), (1, 3));
    w.send(&attempt::<chatty_async>(2, 4)).expect("sent");
    assert_eq!(
        w.recv().expect("a reply"),
        Reply::Logs(2, vec![line(3, "before the wait"), line(1, "after the wait x=4")])
    );
    assert_eq!(returned(w.recv().expect("a reply")), (2, 4));
    // A task that logs nothing sends no log frame.
    w.send(&attempt::<add1>(3, 1)).expect("sent");
    assert_eq!(returned(w.recv().expect("a reply")), (3, 2));
    assert!(w.close().expect("it exits").success());
}
