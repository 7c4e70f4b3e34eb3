//! The frames between a coordinator and a worker process.
//!
//! A worker first writes [`MAGIC`], then frames; the coordinator writes frames. Every
//! frame is its length (`u32`, little-endian, of what follows), a kind byte, then:
//!
//! | kind | frame | body |
//! |---|---|---|
//! | 1 | hello | MessagePack of [`Hello`] |
//! | 2 | attempt | `u32` header length, MessagePack of [`AttemptHeader`], `u32` input count, then each input as `u32` length and bytes |
//! | 3 | ended | `u32` header length, MessagePack of [`EndHeader`], then for a returned value its bytes as `u32` length and bytes |
//! | 4 | refused | MessagePack of [`Refused`] |
//! | 5 | logs | MessagePack of the ticket and the [`LogLine`]s its attempt emitted (a worker sends it just before the attempt's ended frame, when there are any) |
//!
//! Task data (inputs, a returned value) stays raw bytes in the task's wire format, outside
//! the MessagePack headers, so a bridge can pass them through (a Dask future holding
//! bytes) without reading them.

use std::io::{self, Read, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::wire::{WireAttempt, WireContext, WireEnd, WireInput, WireSignal};

/// What a worker writes before its first frame (a test binary's harness may print a line
/// before it; the coordinator skips up to it).
pub const MAGIC: &[u8; 16] = b"TIDEFLOW-WORKER\n";

/// The largest frame either side accepts: a longer length is a malformed frame.
pub const MAX_FRAME: u32 = 1 << 30;

const HELLO: u8 = 1;
const ATTEMPT: u8 = 2;
const ENDED: u8 = 3;
const REFUSED: u8 = 4;
const LOGS: u8 = 5;

/// Who is speaking, first thing on a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version ([`super::PROTOCOL`]).
    pub protocol: u16,
    /// The build's id ([`super::build_id`]).
    pub build: String,
    /// The process id.
    pub pid: u32,
}

/// An attempt, without its inputs (its first field, the ticket, is what a bridge reads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptHeader {
    /// The coordinator's handle on the task run.
    pub ticket: u32,
    /// The task's registered key.
    pub task_key: String,
    /// What the body may read of its run.
    pub context: WireContext,
    /// How long it may run.
    pub timeout: Option<Duration>,
}

/// How an attempt ended, without its returned value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EndHeader {
    /// Returned a value (its bytes follow).
    Returned {
        /// The attempt's ticket.
        ticket: u32,
    },
    /// Failed or signalled.
    Failed {
        /// The attempt's ticket.
        ticket: u32,
        /// The message.
        message: String,
        /// Fail, skip or retry.
        signal: WireSignal,
        /// The task's `retry_on` wants it retried.
        retry_wanted: bool,
    },
    /// Panicked.
    Panicked {
        /// The attempt's ticket.
        ticket: u32,
        /// The panic message.
        message: String,
    },
    /// Ran past its timeout.
    TimedOut {
        /// The attempt's ticket.
        ticket: u32,
        /// The timeout.
        limit: Duration,
    },
}

/// A frame that was not acted on, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The attempt it concerns, if it got that far.
    pub ticket: Option<u32>,
    /// What was wrong and what to do.
    pub message: String,
}

/// One log line a task body emitted (`tracing`) while its attempt ran in a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub level: u8,
    /// The event's target (its module, unless set).
    pub target: String,
    /// The message, then the other fields as `name=value`.
    pub text: String,
}

/// One frame.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// See [`Hello`].
    Hello(Hello),
    /// An attempt to run.
    Attempt(WireAttempt),
    /// An attempt's ticket and end.
    Ended(u32, WireEnd),
    /// See [`Refused`].
    Refused(Refused),
    /// What the attempt of a ticket logged.
    Logs(u32, Vec<LogLine>),
}

/// A frame that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended (cleanly, between frames).
    #[error("the other side closed the connection")]
    Closed,
    /// The stream failed.
    #[error("reading from the other side failed: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a frame of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

fn malformed(what: impl Into<String>) -> FrameError {
    FrameError::Malformed(what.into())
}

fn msgpack<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own header types always serialize.
    rmp_serde::to_vec(value).unwrap_or_default()
}

fn put_u32(out: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let n = u32::try_from(n)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a frame part over 4 GiB"))?;
    out.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

/// Writes one frame.
///
/// # Errors
/// The stream failed, or an attempt has an input held by a cluster (only a bridge that
/// holds it can send it).
pub fn write(out: &mut impl Write, frame: &Frame) -> io::Result<()> {
    let mut body = Vec::new();
    match frame {
        Frame::Hello(h) => {
            body.push(HELLO);
            body.extend(msgpack(h));
        }
        Frame::Refused(r) => {
            body.push(REFUSED);
            body.extend(msgpack(r));
        }
        Frame::Logs(ticket, lines) => {
            body.push(LOGS);
            body.extend(msgpack(&(ticket, lines)));
        }
        Frame::Attempt(a) => {
            body.push(ATTEMPT);
            let header = AttemptHeader {
                ticket: a.ticket,
                task_key: a.task_key.clone(),
                context: a.context.clone(),
                timeout: a.timeout,
            };
            let header = msgpack(&header);
            put_u32(&mut body, header.len())?;
            body.extend(header);
            put_u32(&mut body, a.inputs.len())?;
            for input in &a.inputs {
                match input {
                    WireInput::Encoded(bytes) => {
                        put_u32(&mut body, bytes.len())?;
                        body.extend_from_slice(bytes);
                    }
                    WireInput::Remote(key) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                            "input `{key}` is held by the cluster: only the bridge that holds it can send it"
                        ),
                        ))
                    }
                }
            }
        }
        Frame::Ended(ticket, end) => {
            body.push(ENDED);
            let ticket = *ticket;
            let (header, value) = match end {
                WireEnd::Returned(bytes) => (EndHeader::Returned { ticket }, Some(bytes)),
                WireEnd::Failed {
                    message,
                    signal,
                    retry_wanted,
                } => (
                    EndHeader::Failed {
                        ticket,
                        message: message.clone(),
                        signal: *signal,
                        retry_wanted: *retry_wanted,
                    },
                    None,
                ),
                WireEnd::Panicked(message) => (
                    EndHeader::Panicked {
                        ticket,
                        message: message.clone(),
                    },
                    None,
                ),
                WireEnd::TimedOut(limit) => (
                    EndHeader::TimedOut {
                        ticket,
                        limit: *limit,
                    },
                    None,
                ),
            };
            let header = msgpack(&header);
            put_u32(&mut body, header.len())?;
            body.extend(header);
            if let Some(bytes) = value {
                put_u32(&mut body, bytes.len())?;
                body.extend_from_slice(bytes);
            }
        }
    }
    let mut framed = Vec::with_capacity(body.len() + 4);
    put_u32(&mut framed, body.len())?;
    framed.extend(body);
    out.write_all(&framed)?;
    out.flush()
}

/// Reads one frame.
///
/// # Errors
/// [`FrameError::Closed`] at the end of the stream between frames, [`FrameError::Io`],
/// and [`FrameError::Malformed`] for bytes that are not a frame of this protocol.
pub fn read(input: &mut impl Read) -> Result<Frame, FrameError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len);
    if len == 0 || len > MAX_FRAME {
        return Err(malformed(format!(
            "a frame of {len} bytes (frames are 1 byte to {MAX_FRAME} bytes)"
        )));
    }
    let mut body = vec![0u8; len as usize];
    input.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => malformed(format!("the stream ended inside a frame of {len} bytes")),
        _ => FrameError::Io(e),
    })?;
    let (kind, rest) = body.split_first().ok_or_else(|| malformed("an empty frame"))?;
    let mut cur = Cursor(rest);
    match *kind {
        HELLO => Ok(Frame::Hello(decode(rest, "hello")?)),
        REFUSED => Ok(Frame::Refused(decode(rest, "refused")?)),
        LOGS => {
            let (ticket, lines): (u32, Vec<LogLine>) = decode(rest, "logs")?;
            Ok(Frame::Logs(ticket, lines))
        }
        ATTEMPT => {
            let header: AttemptHeader = decode(cur.part("attempt header")?, "attempt header")?;
            let n = cur.u32("input count")?;
            let mut inputs = Vec::with_capacity(n.min(1024) as usize);
            for i in 0..n {
                inputs.push(WireInput::Encoded(cur.part(&format!("input {i}"))?.to_vec()));
            }
            cur.end("attempt")?;
            Ok(Frame::Attempt(WireAttempt {
                ticket: header.ticket,
                task_key: header.task_key,
                inputs,
                context: header.context,
                timeout: header.timeout,
            }))
        }
        ENDED => {
            let header: EndHeader = decode(cur.part("end header")?, "end header")?;
            let frame = match header {
                EndHeader::Returned { ticket } => {
                    Frame::Ended(ticket, WireEnd::Returned(cur.part("result")?.to_vec()))
                }
                EndHeader::Failed {
                    ticket,
                    message,
                    signal,
                    retry_wanted,
                } => Frame::Ended(
                    ticket,
                    WireEnd::Failed {
                        message,
                        signal,
                        retry_wanted,
                    },
                ),
                EndHeader::Panicked { ticket, message } => Frame::Ended(ticket, WireEnd::Panicked(message)),
                EndHeader::TimedOut { ticket, limit } => Frame::Ended(ticket, WireEnd::TimedOut(limit)),
            };
            cur.end("ended")?;
            Ok(frame)
        }
        other => Err(malformed(format!("unknown frame kind {other}"))),
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, FrameError> {
    rmp_serde::from_slice(bytes).map_err(|e| malformed(format!("the {what} cannot be read: {e}")))
}

/// Reads the parts of a frame body.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u32(&mut self, what: &str) -> Result<u32, FrameError> {
        let (n, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed(format!("the frame ends before its {what}")))?;
        self.0 = rest;
        Ok(u32::from_le_bytes(*n))
    }

    fn part(&mut self, what: &str) -> Result<&'a [u8], FrameError> {
        let len = self.u32(what)? as usize;
        if len > self.0.len() {
            return Err(malformed(format!(
                "its {what} says {len} bytes but {} remain",
                self.0.len()
            )));
        }
        let (part, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(part)
    }

    fn end(&self, what: &str) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(malformed(format!(
                "{} stray bytes after the {what} frame",
                self.0.len()
            )))
        }
    }
}
