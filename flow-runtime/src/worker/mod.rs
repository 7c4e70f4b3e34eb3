//! Worker mode: the program that defines the flows serves task attempts for a coordinator
//! in another process (on a cluster node), by the key each task is registered under.
//!
//! A worker is the same program as the coordinator, started with `TIDEFLOW_WORKER=1`. Its
//! first line of `main` hands over to worker mode:
//!
//! ```text
//! fn main() {
//!     tideflow::worker::serve_if_worker(); // never returns in a worker
//!     // .. the program as usual
//! }
//! ```
//!
//! An integration test binary (`cargo test`) has no `main` of its own: it declares a test
//! named `tideflow_worker` that does the same, and a coordinator starts the binary with
//! [`TEST_ARGS`], which run only that test:
//!
//! ```text
//! #[test]
//! fn tideflow_worker() {
//!     tideflow::worker::serve_if_worker();
//! }
//! ```
//!
//! The worker reads attempts from its standard input and answers on its standard output
//! (see [`frame`] for the frames); what the program itself prints goes to standard error.
//! Several attempts run at once: sync bodies on threads, async ones on a tokio runtime;
//! while no other attempt runs, a sync task whose last two runs took at most 1 ms runs on
//! the thread that reads the frames (a thread hand-over costs more than such a body).
//! Both sides say who they are first ([`frame::Hello`]: protocol version, build id, pid),
//! and a worker refuses a coordinator of another protocol or build, naming both.
//!
//! An async attempt past its timeout is dropped; a sync one cannot be stopped mid-call,
//! so the worker answers `TimedOut` and then ends (exit status 3): its host (a Dask
//! worker) starts a new one for the next attempt, and attempts still running in the
//! old one end as if it had died.

pub mod frame;
mod logs;
mod process;

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::Span;

use self::frame::{Frame, FrameError, Hello, LogLine, Refused};
pub use self::process::{Reply, WorkerError, WorkerProcess};
use crate::context::TaskContext;
use crate::engine::backend::{Attempt, AttemptEnd, Runner};
use crate::engine::wire::{WireAttempt, WireEnd, WireInput};
use crate::task::{SyncBody, TaskBody, TaskDef};
use crate::value::Value;

/// The version of the frames and of their headers.
pub const PROTOCOL: u16 = 3;

/// The exit status of a worker that stopped because a sync attempt ran past its timeout
/// (its thread cannot be stopped otherwise); the Dask bridge sends the attempts it had
/// not answered to a new worker.
pub const STOPPED_AFTER_TIMEOUT: i32 = 3;

/// The environment variable that starts a program in worker mode (`1`).
pub const ENV: &str = "TIDEFLOW_WORKER";

/// The arguments a coordinator passes a worker: for a `cargo test` binary they run only
/// its `tideflow_worker` test; a program calling [`serve_if_worker`] first never reads them.
pub const TEST_ARGS: [&str; 4] = ["tideflow_worker", "--exact", "--nocapture", "--quiet"];

/// The id of this build's tasks: a hash of every registered task's key, parameter types
/// and output type. Two processes run attempts for each other only when their ids match.
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut text = String::new();
        for def in crate::registered_tasks() {
            text.push_str(def.key);
            for p in def.params {
                text.push('\u{1f}');
                text.push_str(p.ty);
            }
            text.push('\u{1e}');
            text.push_str(def.output);
            text.push('\n');
        }
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    })
}

/// Whether this process was started as a worker.
pub fn is_worker() -> bool {
    std::env::var_os(ENV).is_some_and(|v| v == "1")
}

/// In a process started as a worker: serves attempts on standard input and output until
/// the coordinator closes its end, then exits (status 0, or 2 after a protocol error).
/// Elsewhere: returns at once.
pub fn serve_if_worker() {
    if !is_worker() {
        return;
    }
    // What task bodies log goes back with their attempt's end.
    let _ = tracing::subscriber::set_global_default(logs::Capture);
    // On a thread of its own: `main` may already run on a tokio runtime
    // (`#[tokio::main]`), and the worker builds its own.
    let served = worker_stdio().and_then(|(input, output)| {
        std::thread::Builder::new()
            .name("tideflow-worker-io".into())
            .spawn(move || serve(input, output))?
            .join()
            .map_err(|_| io::Error::other("the worker's thread panicked"))?
            .map_err(|e| io::Error::other(e.to_string()))
    });
    let code = match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tideflow worker (pid {}): {e}", std::process::id());
            2
        }
    };
    std::process::exit(code);
}

/// The worker's protocol streams: standard input, and a private copy of standard output;
/// standard output itself then goes to standard error, so that what task bodies print
/// cannot break a frame.
fn worker_stdio() -> io::Result<(impl Read + Send + 'static, impl Write + Send + 'static)> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        let protocol = io::stdout().as_fd().try_clone_to_owned()?;
        rustix::stdio::dup2_stdout(io::stderr().as_fd())?;
        Ok((io::stdin(), std::fs::File::from(protocol)))
    }
    #[cfg(not(unix))]
    {
        Ok((io::stdin(), io::stdout()))
    }
}

/// Why serving stopped before the coordinator closed its end.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The coordinator speaks another protocol or runs another build.
    #[error("{0}")]
    Mismatch(String),
    /// The coordinator sent bytes that are not a frame of this protocol.
    #[error("{0}")]
    Malformed(String),
    /// Writing to the coordinator failed.
    #[error("writing to the coordinator failed: {0}")]
    Io(#[from] io::Error),
}

/// Serves attempts read from `input`, answering on `output`, until `input` ends. Every
/// attempt runs at once, concurrently with the others.
///
/// # Errors
/// A coordinator of another protocol or build, a malformed frame (each refused with a
/// message naming both sides first), or an output that cannot be written.
pub fn serve(
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
) -> Result<(), ServeError> {
    let me = Hello {
        protocol: PROTOCOL,
        build: build_id().to_owned(),
        pid: std::process::id(),
    };
    let out = Arc::new(Mutex::new(BufWriter::new(output)));
    let send = {
        let out = Arc::clone(&out);
        move |frame: &Frame| -> io::Result<()> {
            let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
            frame::write(&mut *out, frame)
        }
    };
    {
        let mut o = out.lock().unwrap_or_else(PoisonError::into_inner);
        o.write_all(frame::MAGIC)?;
        frame::write(&mut *o, &Frame::Hello(me.clone()))?;
    }
    let mut input = BufReader::new(input);
    let refuse = |message: String| {
        let _ = send(&Frame::Refused(Refused {
            ticket: None,
            message: message.clone(),
        }));
        message
    };
    let me_text = format!(
        "this worker (pid {}, protocol {}, build {})",
        me.pid, me.protocol, me.build
    );
    match frame::read(&mut input) {
        Ok(Frame::Hello(them)) => {
            if them.protocol != me.protocol || them.build != me.build {
                return Err(ServeError::Mismatch(refuse(format!(
                    "the coordinator (pid {}, protocol {}, build {}) does not match {me_text}: run the \
                     same build of the program on both sides",
                    them.pid, them.protocol, them.build
                ))));
            }
        }
        Ok(other) => {
            return Err(ServeError::Malformed(refuse(format!(
                "the coordinator's first frame must say hello, not {}; {me_text}",
                kind(&other)
            ))))
        }
        Err(FrameError::Closed) => return Ok(()),
        Err(e) => {
            return Err(ServeError::Malformed(refuse(format!(
                "{e} from the coordinator; {me_text}"
            ))))
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tideflow-worker")
        .build()?;
    let mut running = tokio::task::JoinSet::new();
    let short = Arc::new(ShortTasks::default());
    let result = loop {
        match frame::read(&mut input) {
            Ok(Frame::Attempt(a)) => {
                while running.try_join_next().is_some() {}
                if running.is_empty() && a.timeout.is_none() {
                    if let Some(def) = crate::find_task(&a.task_key).filter(|d| short.is_short(d)) {
                        if let TaskBody::Sync(body) = def.body {
                            let ticket = a.ticket;
                            let _context = runtime.enter();
                            let (reply, lines) =
                                match prepare_for(a, def).and_then(|at| run_here(at, body, &short)) {
                                    Ok((end, lines)) => (Frame::Ended(ticket, end), lines),
                                    Err(message) => (
                                        Frame::Refused(Refused {
                                            ticket: Some(ticket),
                                            message,
                                        }),
                                        Vec::new(),
                                    ),
                                };
                            if !lines.is_empty() {
                                let _ = send(&Frame::Logs(ticket, lines));
                            }
                            let _ = send(&reply);
                            continue;
                        }
                    }
                }
                let send = send.clone();
                let short = Arc::clone(&short);
                running.spawn_on(
                    async move {
                        let ticket = a.ticket;
                        let (reply, stuck, lines) = match run(a, short).await {
                            Ok((end, stuck, lines)) => (Frame::Ended(ticket, end), stuck, lines),
                            Err(message) => (
                                Frame::Refused(Refused {
                                    ticket: Some(ticket),
                                    message,
                                }),
                                false,
                                Vec::new(),
                            ),
                        };
                        // The coordinator may be gone; nothing else to tell it.
                        if !lines.is_empty() {
                            let _ = send(&Frame::Logs(ticket, lines));
                        }
                        let _ = send(&reply);
                        if stuck {
                            // A sync body past its timeout cannot be stopped but with its
                            // process: the worker ends, and its host starts a new one.
                            eprintln!(
                                "tideflow worker (pid {}): a sync attempt ran past its timeout; this worker stops",
                                std::process::id()
                            );
                            std::process::exit(STOPPED_AFTER_TIMEOUT);
                        }
                    },
                    runtime.handle(),
                );
            }
            Ok(other) => {
                break Err(ServeError::Malformed(refuse(format!(
                    "the coordinator sent a {} frame, which only a worker sends; {me_text}",
                    kind(&other)
                ))))
            }
            Err(FrameError::Closed) => break Ok(()),
            Err(e) => {
                break Err(ServeError::Malformed(refuse(format!(
                    "{e} from the coordinator; {me_text}"
                ))))
            }
        }
        // Forget the attempts that are done.
        while running.try_join_next().is_some() {}
    };
    // Attempts under way finish and answer before the worker stops.
    runtime.block_on(async { while running.join_next().await.is_some() {} });
    result
}

fn kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello(_) => "hello",
        Frame::Attempt(_) => "attempt",
        Frame::Ended(..) => "ended",
        Frame::Refused(_) => "refused",
        Frame::Logs(..) => "logs",
        Frame::Routed(_) => "routed attempt",
        Frame::Held(_) => "held",
        Frame::Recomputed(_) => "recomputed",
        Frame::Release(_) => "release",
        Frame::Batch(_) => "batch",
        Frame::BatchDone(_) => "batch done",
    }
}

/// Runs one attempt: its task found by key, its inputs read in the task's wire format,
/// its body run as the local backend runs it; with whether a sync body is still running
/// past its timeout. `Err`: why it could not run.
async fn run(a: WireAttempt, short: Arc<ShortTasks>) -> Result<(WireEnd, bool, Vec<LogLine>), String> {
    let attempt = prepare(a)?;
    let def = attempt.def;
    let runner = Runner::new(Span::current(), None);
    let (end, stuck, lines) = match def.body {
        TaskBody::Sync(body) => {
            let limit = attempt.timeout;
            let thread = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let ran = logs::capture(|| runner.run_sync(attempt, body));
                short.record(def, started.elapsed());
                ran
            });
            match limit {
                Some(limit) => match tokio::time::timeout(limit, thread).await {
                    Ok(joined) => joined.map(|(e, lines)| (e.end, false, lines)),
                    // The thread goes on: only ending the process stops it.
                    Err(_) => Ok((AttemptEnd::TimedOut(limit), true, Vec::new())),
                },
                None => thread.await.map(|(e, lines)| (e.end, false, lines)),
            }
            .map_err(|e| format!("the task's thread failed: {e}"))?
        }
        _ => {
            let (ended, lines) = logs::Captured::new(runner.run_async(attempt)).await;
            (ended.end, false, lines)
        }
    };
    Ok((end.to_wire(def)?, stuck, lines))
}

/// Runs a sync attempt of a task whose runs are short right here, on the thread that
/// reads the frames: no hand-over to a thread and back, which on a busy machine costs
/// more than such a body.
fn run_here(attempt: Attempt, body: SyncBody, short: &ShortTasks) -> Result<(WireEnd, Vec<LogLine>), String> {
    let def = attempt.def;
    let runner = Runner::new(Span::current(), None);
    let started = Instant::now();
    let (ended, lines) = logs::capture(|| runner.run_sync(attempt, body));
    short.record(def, started.elapsed());
    Ok((ended.end.to_wire(def)?, lines))
}

/// Which tasks' sync runs are short (at most [`SHORT`] each, the last two): those run
/// on the reading thread (see [`run_here`]) while no other attempt runs.
#[derive(Default)]
struct ShortTasks(Mutex<HashMap<&'static str, u8>>);

/// How long a sync run may take and still count as short.
const SHORT: Duration = Duration::from_millis(1);

impl ShortTasks {
    fn record(&self, def: &'static TaskDef, took: Duration) {
        let mut runs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = runs.entry(def.key).or_insert(0);
        *n = if took <= SHORT { n.saturating_add(1) } else { 0 };
    }

    fn is_short(&self, def: &'static TaskDef) -> bool {
        let runs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        runs.get(def.key).is_some_and(|&n| n >= 2)
    }
}

/// An attempt ready to run: its task found by key, its inputs read in the task's wire
/// format. `Err`: why it cannot run.
fn prepare(a: WireAttempt) -> Result<Attempt, String> {
    let worker = || format!("this worker (pid {}, build {})", std::process::id(), build_id());
    let def = crate::find_task(&a.task_key).ok_or_else(|| {
        format!(
            "no task is registered under `{}` in {}: the coordinator and the worker must run the same program",
            a.task_key,
            worker()
        )
    })?;
    prepare_for(a, def)
}

/// As [`prepare`], for the task `def` already found by the attempt's key.
fn prepare_for(a: WireAttempt, def: &'static TaskDef) -> Result<Attempt, String> {
    let codec = def.codec.ok_or_else(|| {
        format!(
            "task `{}` is `#[task(local)]`: it runs in the coordinator's process only",
            def.name
        )
    })?;
    if matches!(def.body, TaskBody::Subflow(_)) {
        return Err(format!(
            "task `{}` is a subflow: subflows run on the coordinator",
            def.name
        ));
    }
    if a.inputs.len() != codec.unpack_inputs.len() {
        return Err(format!(
            "task `{}` takes {} input(s), but the attempt carries {}",
            def.name,
            codec.unpack_inputs.len(),
            a.inputs.len()
        ));
    }
    let mut inputs: Vec<Value> = Vec::with_capacity(a.inputs.len());
    for (i, (unpack, input)) in codec.unpack_inputs.iter().zip(a.inputs).enumerate() {
        let param = def.params.get(i).map_or("?", |p| p.name);
        let WireInput::Encoded(bytes) = input else {
            return Err(format!(
                "input `{param}` of task `{}` did not arrive: it is still a reference",
                def.name
            ));
        };
        inputs.push(
            unpack(&bytes)
                .map_err(|e| format!("input `{param}` of task `{}` cannot be read: {e}", def.name))?,
        );
    }
    let c = a.context;
    let ctx = TaskContext {
        id: c.task_run_id,
        flow_name: intern(&c.flow),
        task_name: def.name,
        binding: Arc::from(c.binding.as_str()),
        attempt: c.attempt,
        scheduled_start: c.scheduled_start,
        params: Arc::new(c.parameters),
    };
    Ok(Attempt {
        ticket: a.ticket,
        def,
        inputs,
        ctx,
        timeout: a.timeout,
        retry_on: def.options.retry_on,
        report_start: false,
        result_here: true,
    })
}

/// A flow's name as the `&'static str` a [`TaskContext`] holds: each distinct name is
/// kept once for the life of the worker.
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}
