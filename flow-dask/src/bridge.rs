//! The bridge process: started with Python, fed attempt frames, read for replies.

use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use flow_runtime::wire::WireAttempt;
use flow_runtime::worker::frame::{self, Frame, FrameError, Hello};
use flow_runtime::worker::{self, Reply};

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
    /// Its result comes back with it: a bridge used directly holds nothing.
    ///
    /// # Errors
    /// The bridge is gone.
    pub fn send(&mut self, attempt: &WireAttempt) -> Result<(), DaskError> {
        let mut attempt = attempt.clone();
        attempt.result_here = true;
        frame::write(&mut self.input, &Frame::Routed(attempt)).map_err(|e| DaskError::Frame(e.into()))
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
            Frame::Logs(ticket, lines) => Ok(Reply::Logs(ticket, lines)),
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

/// A bridge taken apart, for a connection that reads and writes it from two threads.
pub(crate) struct Parts {
    pub(crate) child: Child,
    pub(crate) input: BufWriter<ChildStdin>,
    pub(crate) output: BufReader<ChildStdout>,
    pub(crate) scheduler: String,
    pub(crate) workers: usize,
    pub(crate) dir: tempfile::TempDir,
}

impl DaskBridge {
    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            child: self.child,
            input: self.input,
            output: self.output,
            scheduler: self.scheduler,
            workers: self.workers,
            dir: self._dir,
        }
    }
}
