//! Task attempts on a Dask cluster, driven through Dask's own Python client.
//!
//! [`DaskBridge`] starts a small Python bridge shipped inside this crate (run with
//! `TIDEFLOW_PYTHON`, else `python3`), which connects to a Dask scheduler or starts a
//! local cluster on 127.0.0.1, and has every Dask worker (those that join later too) start
//! one long-lived tideflow worker process: this program in worker mode
//! ([`flow_runtime::worker`]), reached over a pipe. Each attempt sent to the bridge runs
//! as one Dask task on a worker, which hands it to its tideflow process; the reply comes
//! back as the task's result.
//!
//! The program reaches the workers by its path (same machine, a shared file system, a
//! container image) or uploaded by Dask ([`WorkerProgram::upload`]), which loses the exec
//! bit on the way: the bridge restores it.
//!
//! [`DaskExecutor`] makes a cluster an executor: `flow.executor(DaskExecutor::local(2))`
//! runs the flow's task attempts there (the scheduler stays in this program).

use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use flow_runtime::wire::WireAttempt;
use flow_runtime::worker::frame::{self, Frame, FrameError, Hello, Refused};
use flow_runtime::worker::{self, Reply};
use flow_runtime::{ClusterConnection, ClusterExecutor, ClusterReply, Executor};
use tokio::sync::mpsc;

/// The bridge, shipped inside the crate.
const BRIDGE: &str = include_str!("../python/tideflow_bridge.py");

/// The Dask version the bridge is tested with.
pub const DISTRIBUTED: &str = "2026.8.0";

/// The Python the bridge runs with: `TIDEFLOW_PYTHON`, else `python3`.
pub fn python() -> PathBuf {
    match std::env::var_os("TIDEFLOW_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("python3"),
    }
}

/// Which cluster to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cluster {
    /// A running Dask scheduler, e.g. `tcp://127.0.0.1:8786`.
    Connect(String),
    /// A local cluster of this many worker processes (one thread each), on 127.0.0.1,
    /// started by the bridge and stopped with it.
    Local(usize),
}

/// The program the Dask workers run in worker mode, and how they get it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerProgram {
    path: PathBuf,
    args: Vec<String>,
    upload: bool,
}

impl WorkerProgram {
    /// This very program, at its path, with [`worker::TEST_ARGS`] (harmless to a program
    /// whose `main` enters worker mode first; what a `cargo test` binary needs).
    ///
    /// # Errors
    /// The path of the running program cannot be read.
    pub fn this_program() -> io::Result<Self> {
        Ok(WorkerProgram {
            path: std::env::current_exe()?,
            args: worker::TEST_ARGS.iter().map(|a| (*a).to_owned()).collect(),
            upload: false,
        })
    }

    /// The program at `path` (which every Dask worker can run), with `args`.
    pub fn at(path: impl Into<PathBuf>, args: &[&str]) -> Self {
        WorkerProgram {
            path: path.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            upload: false,
        }
    }

    /// Sends the program to every Dask worker (and those that join later) instead of
    /// running it from its path.
    pub fn upload(mut self) -> Self {
        self.upload = true;
        self
    }

    /// The program's path here.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What went wrong with the bridge or the cluster.
#[derive(Debug, thiserror::Error)]
pub enum DaskError {
    /// Python could not be started.
    #[error(
        "cannot run Python `{python}` for the Dask bridge: {source}; install Python 3 and Dask's client \
         (`pip install 'distributed=={DISTRIBUTED}'`), or set TIDEFLOW_PYTHON to a Python that has it"
    )]
    NoPython {
        /// The Python tried.
        python: String,
        /// Why it did not start.
        source: io::Error,
    },
    /// The bridge reported why it cannot start (Dask missing, cluster unreachable).
    #[error("{0}")]
    Bridge(String),
    /// The bridge went away or wrote something that is not a frame.
    #[error("the Dask bridge: {0}")]
    Frame(#[from] FrameError),
    /// Not the address of a Dask scheduler.
    #[error("`{given}` is not a Dask scheduler's address ({reason}): write it as `tcp://host:port`")]
    Address {
        /// What was given.
        given: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A running bridge to a Dask cluster.
#[derive(Debug)]
pub struct DaskBridge {
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    scheduler: String,
    workers: usize,
    _dir: tempfile::TempDir,
}

impl DaskBridge {
    /// Starts the bridge: connects to (or starts) `cluster` and has its workers run
    /// `program` in worker mode. Returns once the cluster answers.
    ///
    /// # Errors
    /// [`DaskError::NoPython`] without a Python, [`DaskError::Bridge`] when Dask is not
    /// installed there or the cluster cannot be reached (the message says which, and
    /// what to do).
    pub fn start(cluster: &Cluster, program: &WorkerProgram) -> Result<Self, DaskError> {
        Self::start_with(&python(), cluster, program)
    }

    /// As [`DaskBridge::start`], with the bridge run by `python`.
    ///
    /// # Errors
    /// As [`DaskBridge::start`].
    pub fn start_with(python: &Path, cluster: &Cluster, program: &WorkerProgram) -> Result<Self, DaskError> {
        let dir = tempfile::Builder::new()
            .prefix("tideflow-dask-")
            .tempdir()
            .map_err(|e| DaskError::Bridge(format!("cannot make a folder for the Dask bridge: {e}")))?;
        let script = dir.path().join("tideflow_bridge.py");
        std::fs::write(&script, BRIDGE).map_err(|e| {
            DaskError::Bridge(format!(
                "cannot write the Dask bridge to {}: {e}",
                script.display()
            ))
        })?;
        let mut hello = Vec::new();
        frame::write(
            &mut hello,
            &Frame::Hello(Hello {
                protocol: worker::PROTOCOL,
                build: worker::build_id().to_owned(),
                pid: std::process::id(),
            }),
        )
        .map_err(|e| DaskError::Bridge(format!("cannot write the hello frame: {e}")))?;
        let hex: String = hello.iter().map(|b| format!("{b:02x}")).collect();

        let mut cmd = Command::new(python);
        cmd.arg(&script);
        match cluster {
            Cluster::Connect(addr) => cmd.args(["--scheduler", addr]),
            Cluster::Local(n) => cmd.args(["--local", &n.max(&1).to_string()]),
        };
        let scratch = dir.path().join("dask");
        cmd.arg("--local-directory")
            .arg(&scratch)
            .arg("--program")
            .arg(&program.path)
            .args(["--hello", &hex]);
        if program.upload {
            cmd.arg("--upload");
        }
        cmd.arg("--").args(&program.args);
        let mut child = cmd
            // Dask's own scratch files stay in this bridge's folder.
            .env("DASK_TEMPORARY_DIRECTORY", &scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| DaskError::NoPython {
                python: python.display().to_string(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(DaskError::Bridge(
                "the bridge's standard input or output is not a pipe".into(),
            ));
        };
        let mut output = BufReader::new(stdout);
        let mut line = String::new();
        let read = output.read_line(&mut line);
        let ready: serde_json::Value = match read {
            Ok(n) if n > 0 => serde_json::from_str(&line).map_err(|_| {
                DaskError::Bridge(format!(
                    "the Dask bridge did not start: it printed {:?}",
                    line.trim()
                ))
            })?,
            _ => {
                let status = child.wait().ok();
                return Err(DaskError::Bridge(format!(
                    "the Dask bridge ({}) stopped before it was ready (exit status {:?}); its errors are above",
                    python.display(),
                    status.and_then(|s| s.code())
                )));
            }
        };
        if let Some(error) = ready.get("error").and_then(|e| e.as_str()) {
            let _ = child.wait();
            return Err(DaskError::Bridge(error.to_owned()));
        }
        Ok(DaskBridge {
            child,
            input: BufWriter::new(stdin),
            output,
            scheduler: ready["scheduler"].as_str().unwrap_or_default().to_owned(),
            workers: ready["workers"].as_u64().unwrap_or_default() as usize,
            _dir: dir,
        })
    }

    /// The scheduler's address.
    pub fn scheduler(&self) -> &str {
        &self.scheduler
    }

    /// How many Dask workers the cluster had when the bridge started.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Sends an attempt to run on the cluster; its reply comes from [`DaskBridge::recv`].
    ///
    /// # Errors
    /// The bridge is gone.
    pub fn send(&mut self, attempt: &WireAttempt) -> Result<(), DaskError> {
        frame::write(&mut self.input, &Frame::Attempt(attempt.clone()))
            .map_err(|e| DaskError::Frame(e.into()))
    }

    /// The next reply: an attempt's end, or why it did not run (a worker process that
    /// died is `Refused` naming it).
    ///
    /// # Errors
    /// The bridge went away or wrote a malformed frame.
    pub fn recv(&mut self) -> Result<Reply, DaskError> {
        match frame::read(&mut self.output)? {
            Frame::Ended(ticket, end) => Ok(Reply::Ended(ticket, end)),
            Frame::Refused(r) => Ok(Reply::Refused(r)),
            _ => Err(DaskError::Frame(FrameError::Malformed(
                "the bridge may only answer ended or refused".into(),
            ))),
        }
    }

    /// Lets the attempts under way finish, then stops the bridge (and a local cluster).
    ///
    /// # Errors
    /// Waiting for the bridge failed.
    pub fn close(self) -> io::Result<std::process::ExitStatus> {
        let DaskBridge { mut child, input, .. } = self;
        drop(input);
        child.wait()
    }
}

impl DaskBridge {
    /// This bridge as one flow run's connection: replies are read on a thread of their
    /// own and handed to the scheduler.
    fn into_connection(self, max_concurrency: usize) -> DaskConnection {
        let (tx, rx) = mpsc::unbounded_channel();
        let DaskBridge {
            child,
            input,
            mut output,
            scheduler,
            _dir,
            ..
        } = self;
        let where_ = scheduler.clone();
        let reader = std::thread::Builder::new()
            .name("tideflow-dask-replies".into())
            .spawn(move || {
                // The bridge's folder (Dask's scratch space in it) goes once the bridge
                // has closed its output, that is, once it and its cluster have stopped.
                let _dir = _dir;
                read_replies(&mut output, &tx, &where_);
            });
        DaskConnection {
            child,
            input: Some(input),
            replies: rx,
            max_concurrency,
            _reader: reader.ok(),
        }
    }
}

/// Hands every reply of the bridge to the scheduler, until the bridge stops.
fn read_replies(output: &mut BufReader<ChildStdout>, tx: &mpsc::UnboundedSender<ClusterReply>, where_: &str) {
    loop {
        let (reply, last) = match frame::read(output) {
            Ok(Frame::Ended(ticket, end)) => (ClusterReply::Ended(ticket, end), false),
            Ok(Frame::Refused(Refused {
                ticket: Some(ticket),
                message,
            })) => (ClusterReply::Refused(ticket, message), false),
            Ok(Frame::Refused(Refused {
                ticket: None,
                message,
            })) => (ClusterReply::Lost(message), true),
            Ok(_) => (
                ClusterReply::Lost("the Dask bridge sent a frame only a coordinator sends".into()),
                true,
            ),
            Err(FrameError::Closed) => (
                ClusterReply::Lost(format!(
                    "the Dask bridge to {where_} stopped; its errors are above"
                )),
                true,
            ),
            Err(e) => (
                ClusterReply::Lost(format!("the Dask bridge to {where_}: {e}")),
                true,
            ),
        };
        // A run that ended no longer listens; the bridge is still read to its end.
        let _ = tx.send(reply);
        if last {
            return;
        }
    }
}

/// One flow run's connection to a Dask cluster, through its bridge.
struct DaskConnection {
    child: Child,
    input: Option<BufWriter<ChildStdin>>,
    replies: mpsc::UnboundedReceiver<ClusterReply>,
    max_concurrency: usize,
    _reader: Option<std::thread::JoinHandle<()>>,
}

impl ClusterConnection for DaskConnection {
    fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    fn submit(&mut self, attempt: &WireAttempt) -> Result<(), String> {
        let input = self.input.as_mut().ok_or("the run was cancelled")?;
        frame::write(input, &Frame::Attempt(attempt.clone())).map_err(|e| format!("the Dask bridge: {e}"))
    }

    fn replies(&mut self) -> &mut mpsc::UnboundedReceiver<ClusterReply> {
        &mut self.replies
    }

    fn cancel(&mut self) {
        // The bridge lets what runs finish, then stops (and a local cluster with it).
        self.input = None;
    }
}

impl Drop for DaskConnection {
    fn drop(&mut self) {
        // Closing the bridge's input stops it once what runs is done; it is not waited
        // for here (this is the scheduler's thread).
        self.input = None;
        let _ = self.child.try_wait();
    }
}

/// Runs a flow's task attempts on a Dask cluster: `flow.executor(DaskExecutor::local(2))`.
///
/// The flow's scheduler stays in this program; each attempt of a task that can cross a
/// process runs on a Dask worker, in a long-lived worker process of this same program
/// (whose `main` must call `tideflow::worker::serve_if_worker()` first). Local tasks,
/// subflows and the gates of an `if` run here. Each flow run starts its own bridge (and,
/// for [`DaskExecutor::local`], its own cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaskExecutor {
    cluster: Cluster,
    program: Option<WorkerProgram>,
    python: Option<PathBuf>,
    max_concurrency: usize,
}

impl DaskExecutor {
    /// A running Dask scheduler at `address` (`tcp://host:port`, or `host:port`).
    ///
    /// # Errors
    /// [`DaskError::Address`] for something that is not such an address.
    pub fn connect(address: &str) -> Result<Self, DaskError> {
        let bad = |reason: &str| DaskError::Address {
            given: address.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = match address.split_once("://") {
            Some(("tcp" | "tls" | "ws" | "wss", rest)) => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "`{scheme}` is not a Dask protocol (tcp, tls, ws, wss)"
                )))
            }
            None => address,
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("it has no port"))?;
        if host.is_empty() {
            return Err(bad("it has no host"));
        }
        port.parse::<u16>()
            .map_err(|_| bad(&format!("`{port}` is not a port")))?;
        let address = if address.contains("://") {
            address.to_owned()
        } else {
            format!("tcp://{address}")
        };
        Ok(DaskExecutor {
            cluster: Cluster::Connect(address),
            program: None,
            python: None,
            max_concurrency: 256,
        })
    }

    /// A local cluster of `n_workers` worker processes on 127.0.0.1, for a laptop and for
    /// tests, started for each flow run and stopped after it.
    pub fn local(n_workers: usize) -> Self {
        DaskExecutor {
            cluster: Cluster::Local(n_workers.max(1)),
            program: None,
            python: None,
            max_concurrency: 256,
        }
    }

    /// The program the workers run (by default this one, from its path).
    pub fn program(mut self, program: WorkerProgram) -> Self {
        self.program = Some(program);
        self
    }

    /// The Python that runs the bridge (by default `TIDEFLOW_PYTHON`, else `python3`).
    pub fn python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = Some(python.into());
        self
    }

    /// At most this many task runs on the cluster at once (256 by default).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }
}

impl flow_runtime::Cluster for DaskExecutor {
    fn describe(&self) -> String {
        match &self.cluster {
            Cluster::Connect(addr) => format!("dask {addr}"),
            Cluster::Local(n) => format!("dask local cluster of {n} worker(s)"),
        }
    }

    fn open(&self) -> Result<Box<dyn ClusterConnection>, String> {
        let program = match &self.program {
            Some(p) => p.clone(),
            None => {
                WorkerProgram::this_program().map_err(|e| format!("cannot find this program's path: {e}"))?
            }
        };
        let python = self.python.clone().unwrap_or_else(python);
        let bridge = DaskBridge::start_with(&python, &self.cluster, &program).map_err(|e| e.to_string())?;
        Ok(Box::new(bridge.into_connection(self.max_concurrency)))
    }
}

impl From<DaskError> for flow_runtime::FlowError {
    /// So that `?` works in a `main` returning `Result<(), FlowError>`.
    fn from(e: DaskError) -> Self {
        flow_runtime::FlowError::Executor(e.to_string())
    }
}

impl From<DaskExecutor> for Executor {
    fn from(e: DaskExecutor) -> Self {
        Executor::Cluster(ClusterExecutor::new(e))
    }
}
