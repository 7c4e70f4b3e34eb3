//! A worker process, seen from its coordinator: started, greeted, fed attempts.

use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::frame::{self, Frame, FrameError, Hello, Refused};
use super::{build_id, ENV, PROTOCOL};
use crate::engine::wire::{WireAttempt, WireEnd};

/// How far into a worker's output its greeting must start (a test harness prints a line
/// or two first).
const PREAMBLE: usize = 64 * 1024;

/// A worker process reached over its standard input and output: what a cluster node runs
/// for each of its executors, and what a test drives directly.
#[derive(Debug)]
pub struct WorkerProcess {
    program: PathBuf,
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    hello: Hello,
}

/// What a worker answers to an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The attempt of this ticket ended.
    Ended(u32, WireEnd),
    /// The worker did not run it (or could not read a frame): why.
    Refused(Refused),
    /// What the attempt of this ticket logged (just before its end).
    Logs(u32, Vec<frame::LogLine>),
}

/// Why a worker process cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// It did not start.
    #[error("cannot start the worker `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// It did not greet as a tideflow worker.
    #[error(
        "`{program}` did not start as a tideflow worker (it printed {seen:?}); its `main` must call \
         `tideflow::worker::serve_if_worker()` first, or a test binary must have a `tideflow_worker` test that does"
    )]
    NotAWorker {
        /// The program.
        program: String,
        /// The start of what it printed.
        seen: String,
    },
    /// It speaks another protocol or runs another build.
    #[error(
        "the worker `{program}` (pid {pid}, protocol {worker_protocol}, build {worker_build}) does not match \
         this coordinator (protocol {protocol}, build {build}): run the same build of the program on both sides"
    )]
    Mismatch {
        /// The program.
        program: String,
        /// The worker's pid.
        pid: u32,
        /// The worker's protocol.
        worker_protocol: u16,
        /// The worker's build.
        worker_build: String,
        /// This side's protocol.
        protocol: u16,
        /// This side's build.
        build: String,
    },
    /// A frame could not be read or written.
    #[error("the worker `{program}` (pid {pid}): {source}")]
    Frame {
        /// The program.
        program: String,
        /// The worker's pid.
        pid: u32,
        /// What went wrong.
        source: FrameError,
    },
}

impl WorkerProcess {
    /// Starts `program` with `args` as a worker (`TIDEFLOW_WORKER=1`), reads its greeting,
    /// checks its protocol and build, and greets it. Its standard error is this process's.
    ///
    /// # Errors
    /// [`WorkerError::Spawn`], [`WorkerError::NotAWorker`], [`WorkerError::Mismatch`].
    pub fn spawn(program: impl AsRef<Path>, args: &[&str]) -> Result<Self, WorkerError> {
        let program = program.as_ref().to_path_buf();
        let name = program.display().to_string();
        let mut child = Command::new(&program)
            .args(args)
            .env(ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| WorkerError::Spawn {
                program: name.clone(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(WorkerError::Spawn {
                program: name,
                source: io::Error::other("its standard input or output is not a pipe"),
            });
        };
        let mut output = BufReader::new(stdout);
        let pid = child.id();
        let frame_error = |source| WorkerError::Frame {
            program: name.clone(),
            pid,
            source,
        };
        skip_to_magic(&mut output).map_err(|seen| {
            let _ = child.kill();
            let _ = child.wait();
            WorkerError::NotAWorker {
                program: name.clone(),
                seen,
            }
        })?;
        let hello = match frame::read(&mut output) {
            Ok(Frame::Hello(h)) => h,
            Ok(_) => {
                return Err(frame_error(FrameError::Malformed(
                    "a worker's first frame must say hello".into(),
                )))
            }
            Err(e) => return Err(frame_error(e)),
        };
        if hello.protocol != PROTOCOL || hello.build != build_id() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(WorkerError::Mismatch {
                program: name,
                pid: hello.pid,
                worker_protocol: hello.protocol,
                worker_build: hello.build,
                protocol: PROTOCOL,
                build: build_id().to_owned(),
            });
        }
        let mut input = BufWriter::new(stdin);
        let me = Hello {
            protocol: PROTOCOL,
            build: build_id().to_owned(),
            pid: std::process::id(),
        };
        frame::write(&mut input, &Frame::Hello(me)).map_err(|e| frame_error(FrameError::Io(e)))?;
        Ok(WorkerProcess {
            program,
            child,
            input,
            output,
            hello,
        })
    }

    /// The worker's greeting: its protocol, build and pid.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Sends an attempt; its reply comes from [`WorkerProcess::recv`].
    ///
    /// # Errors
    /// The worker's input is closed (it died), or an input is still a reference.
    pub fn send(&mut self, attempt: &WireAttempt) -> Result<(), WorkerError> {
        frame::write(&mut self.input, &Frame::Attempt(attempt.clone()))
            .map_err(|e| self.error(FrameError::Io(e)))
    }

    /// The next reply, waiting for it.
    ///
    /// # Errors
    /// The worker closed its output (it exited or died) or wrote a malformed frame.
    pub fn recv(&mut self) -> Result<Reply, WorkerError> {
        match frame::read(&mut self.output) {
            Ok(Frame::Ended(ticket, end)) => Ok(Reply::Ended(ticket, end)),
            Ok(Frame::Refused(r)) => Ok(Reply::Refused(r)),
            Ok(Frame::Logs(ticket, lines)) => Ok(Reply::Logs(ticket, lines)),
            Ok(_) => Err(self.error(FrameError::Malformed(
                "a worker may only answer ended, refused or logs".into(),
            ))),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Closes the worker's input (it finishes what runs, then exits) and waits for it.
    ///
    /// # Errors
    /// Waiting failed.
    pub fn close(self) -> io::Result<std::process::ExitStatus> {
        let WorkerProcess { mut child, input, .. } = self;
        drop(input);
        child.wait()
    }

    /// Kills the worker process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn error(&self, source: FrameError) -> WorkerError {
        WorkerError::Frame {
            program: self.program.display().to_string(),
            pid: self.hello.pid,
            source,
        }
    }
}

/// Reads up to the worker's magic line; `Err` with the start of what came instead.
fn skip_to_magic(output: &mut impl Read) -> Result<(), String> {
    let magic = frame::MAGIC;
    let mut seen: Vec<u8> = Vec::new();
    let mut byte = [0u8; 1];
    while seen.len() < PREAMBLE {
        match output.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                seen.push(byte[0]);
                if seen.ends_with(magic) {
                    return Ok(());
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&seen[..seen.len().min(200)]).into_owned();
    Err(if text.is_empty() {
        "nothing".to_owned()
    } else {
        text
    })
}
