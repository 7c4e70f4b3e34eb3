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
//! | 6 | routed attempt | coordinator to bridge: `u32` routing length, MessagePack of the routing (below), then a whole attempt frame whose inputs held by the cluster are empty |
//! | 7 | held | bridge to coordinator: MessagePack of [`Held`] |
//! | 8 | recomputed | bridge to coordinator: MessagePack of the ticket of a finished attempt the cluster ran again |
//! | 9 | release | coordinator to bridge: MessagePack of the keys of held results nothing needs any more |
//! | 10 | batch | coordinator to bridge: `u32` routing length, MessagePack of `[batch, [child routing, ..]]`, then each child's attempt frame (as in a routed attempt), one after the other: one Dask task runs them all |
//! | 11 | batch done | bridge to coordinator: MessagePack of [`BatchDone`] (sent before the outcomes it counts) |
//!
//! A child's routing in a batch is `[ticket, result_here, [[input index, piece], ..]]`
//! (a batch carries no tag limits). The routing of an attempt is `[ticket, result_here, [[input index, piece], ..], [[tag,
//! limit], ..]]`: one entry per input the cluster builds, then the cluster-wide limits
//! the attempt holds a slot of while it runs; a piece is `[0, bytes]` (a value),
//! `[1, key, [index, ..]]` (a held result, or an element of a held list) or
//! `[2, [piece, ..]]` (a list or tuple of pieces, written as a MessagePack array).
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
const ROUTED: u8 = 6;
const HELD: u8 = 7;
const RECOMPUTED: u8 = 8;
const RELEASE: u8 = 9;
const BATCH: u8 = 10;
const BATCH_DONE: u8 = 11;

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

/// A returned value the cluster keeps, as the bridge reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The attempt's ticket.
    pub ticket: u32,
    /// The cluster's key for the value.
    pub key: String,
    /// Its size in the wire format.
    pub bytes: u64,
    /// Its length, when it is a list (a MessagePack array).
    pub len: Option<u32>,
}

/// Attempts of one task that a cluster runs as one unit of its own (one Dask task), one
/// after the other, each with its own outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The coordinator's number for the batch ([`BatchDone`] names it).
    pub id: u32,
    /// The attempts, in the order they run.
    pub attempts: Vec<WireAttempt>,
}

/// What a bridge says of a batch: how long its attempts took, and whether it is over
/// (every attempt of it answered).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchDone {
    /// The batch's number.
    pub batch: u32,
    /// How many attempts the time is for (attempts that ran to their end on a worker).
    pub timed: u32,
    /// Their time on the worker, in seconds, all told.
    pub seconds: f64,
    /// Every attempt of the batch has been answered.
    pub last: bool,
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
    /// An attempt for a bridge: its inputs may be held by the cluster.
    Routed(WireAttempt),
    /// See [`Held`].
    Held(Held),
    /// A finished attempt of this ticket ran again on the cluster.
    Recomputed(u32),
    /// Held results nothing needs any more, by key.
    Release(Vec<String>),
    /// See [`Batch`].
    Batch(Batch),
    /// See [`BatchDone`].
    BatchDone(BatchDone),
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
    // What follows the body, written as it is (a returned value of megabytes is not
    // copied into the frame first).
    let mut tail: &[u8] = &[];
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
            if let Some(input) = a.inputs.iter().find(|i| !matches!(i, WireInput::Encoded(_))) {
                let mut keys = Vec::new();
                input.keys(&mut keys);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "an input refers to {keys:?}, held by the cluster: only the bridge that holds it \
                         can send it"
                    ),
                ));
            }
            attempt_body(&mut body, a)?;
        }
        Frame::Routed(a) => {
            body.push(ROUTED);
            let routing = msgpack(&(a.ticket, a.result_here, refs(a), &a.limits));
            put_u32(&mut body, routing.len())?;
            body.extend(routing);
            let mut inner = Vec::new();
            attempt_body(&mut inner, a)?;
            put_u32(&mut body, inner.len())?;
            body.extend(inner);
        }
        Frame::Batch(batch) => {
            body.push(BATCH);
            let children: Vec<_> = batch
                .attempts
                .iter()
                .map(|a| (a.ticket, a.result_here, refs(a)))
                .collect();
            let routing = msgpack(&(batch.id, children));
            put_u32(&mut body, routing.len())?;
            body.extend(routing);
            for a in &batch.attempts {
                let at = body.len();
                body.extend([0; 4]);
                attempt_body(&mut body, a)?;
                let len = u32::try_from(body.len() - at - 4)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an attempt over 4 GiB"))?;
                body[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
        }
        Frame::BatchDone(done) => {
            body.push(BATCH_DONE);
            body.extend(msgpack(done));
        }
        Frame::Held(h) => {
            body.push(HELD);
            body.extend(msgpack(h));
        }
        Frame::Recomputed(ticket) => {
            body.push(RECOMPUTED);
            body.extend(msgpack(ticket));
        }
        Frame::Release(keys) => {
            body.push(RELEASE);
            body.extend(msgpack(keys));
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
                tail = bytes;
            }
        }
    }
    let mut len = Vec::with_capacity(4);
    put_u32(&mut len, body.len() + tail.len())?;
    out.write_all(&len)?;
    out.write_all(&body)?;
    out.write_all(tail)?;
    out.flush()
}

/// The inputs of an attempt the cluster builds, as `[input index, piece]`.
fn refs(a: &WireAttempt) -> Vec<(u32, Piece<'_>)> {
    a.inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| !matches!(i, WireInput::Encoded(_)))
        .map(|(i, input)| (i as u32, Piece(input)))
        .collect()
}

/// The body of an attempt frame (kind byte included); inputs held by the cluster are
/// written empty.
fn attempt_body(body: &mut Vec<u8>, a: &WireAttempt) -> io::Result<()> {
    body.push(ATTEMPT);
    let header = AttemptHeader {
        ticket: a.ticket,
        task_key: a.task_key.clone(),
        context: a.context.clone(),
        timeout: a.timeout,
    };
    let header = msgpack(&header);
    put_u32(body, header.len())?;
    body.extend(header);
    put_u32(body, a.inputs.len())?;
    for input in &a.inputs {
        let bytes = match input {
            WireInput::Encoded(bytes) => bytes.as_slice(),
            WireInput::Remote { .. } | WireInput::Parts(_) => &[],
        };
        put_u32(body, bytes.len())?;
        body.extend_from_slice(bytes);
    }
    Ok(())
}

/// An input the cluster builds, as a piece of a routing (see the module's table).
struct Piece<'a>(&'a WireInput);

impl Serialize for Piece<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Bin<'a>(&'a [u8]);
        impl Serialize for Bin<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        match self.0 {
            WireInput::Encoded(bytes) => (0u8, Bin(bytes)).serialize(s),
            WireInput::Remote { key, path } => (1u8, key, path).serialize(s),
            WireInput::Parts(parts) => (2u8, parts.iter().map(Piece).collect::<Vec<_>>()).serialize(s),
        }
    }
}

/// A piece read back (the inverse of [`Piece`]).
struct PieceIn(WireInput);

impl<'de> Deserialize<'de> for PieceIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = PieceIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a piece: [0, bytes], [1, key, path] or [2, pieces]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<PieceIn, A::Error> {
                use serde::de::Error;
                let kind: u8 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::custom("a piece without a kind"))?;
                let missing = || A::Error::custom("a piece ends early");
                Ok(PieceIn(match kind {
                    0 => {
                        let bytes: serde_bytes_buf::Buf = seq.next_element()?.ok_or_else(missing)?;
                        WireInput::Encoded(bytes.0)
                    }
                    1 => {
                        let key: String = seq.next_element()?.ok_or_else(missing)?;
                        let path: Vec<u32> = seq.next_element()?.ok_or_else(missing)?;
                        WireInput::Remote { key, path }
                    }
                    2 => {
                        let parts: Vec<PieceIn> = seq.next_element()?.ok_or_else(missing)?;
                        WireInput::Parts(parts.into_iter().map(|p| p.0).collect())
                    }
                    k => return Err(A::Error::custom(format!("a piece of unknown kind {k}"))),
                }))
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// Bytes read from a MessagePack `bin`.
mod serde_bytes_buf {
    pub(super) struct Buf(pub(super) Vec<u8>);

    impl<'de> serde::Deserialize<'de> for Buf {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl serde::de::Visitor<'_> for Visit {
                type Value = Buf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Buf, E> {
                    Ok(Buf(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Buf, E> {
                    Ok(Buf(v))
                }
            }
            d.deserialize_bytes(Visit)
        }
    }
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
        ATTEMPT => Ok(Frame::Attempt(read_attempt(cur)?)),
        ROUTED => {
            type Routing = (u32, bool, Vec<(u32, PieceIn)>, Vec<(String, u32)>);
            let (ticket, result_here, refs, limits): Routing = decode(cur.part("routing")?, "routing")?;
            let mut a = read_routed(cur.part("routed attempt")?, ticket, result_here, refs)?;
            cur.end("routed attempt")?;
            a.limits = limits;
            Ok(Frame::Routed(a))
        }
        BATCH => {
            type Routing = (u32, Vec<(u32, bool, Vec<(u32, PieceIn)>)>);
            let (id, children): Routing = decode(cur.part("batch routing")?, "batch routing")?;
            let attempts = children
                .into_iter()
                .map(|(ticket, result_here, refs)| {
                    read_routed(cur.part("batched attempt")?, ticket, result_here, refs)
                })
                .collect::<Result<_, _>>()?;
            cur.end("batch")?;
            Ok(Frame::Batch(Batch { id, attempts }))
        }
        BATCH_DONE => Ok(Frame::BatchDone(decode(rest, "batch done")?)),
        HELD => Ok(Frame::Held(decode(rest, "held")?)),
        RECOMPUTED => Ok(Frame::Recomputed(decode(rest, "recomputed")?)),
        RELEASE => Ok(Frame::Release(decode(rest, "release")?)),
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

/// An attempt read from a routed or batch frame, with its routing put back in.
fn read_routed(
    inner: &[u8],
    ticket: u32,
    result_here: bool,
    refs: Vec<(u32, PieceIn)>,
) -> Result<WireAttempt, FrameError> {
    let (kind, inner) = inner
        .split_first()
        .ok_or_else(|| malformed("an empty routed attempt"))?;
    if *kind != ATTEMPT {
        return Err(malformed(format!("a routed frame of kind {kind}")));
    }
    let mut a = read_attempt(Cursor(inner))?;
    for (i, piece) in refs {
        let slot = a
            .inputs
            .get_mut(i as usize)
            .ok_or_else(|| malformed(format!("the routing names input {i}, which is not there")))?;
        *slot = piece.0;
    }
    a.ticket = ticket;
    a.result_here = result_here;
    Ok(a)
}

fn read_attempt(mut cur: Cursor<'_>) -> Result<WireAttempt, FrameError> {
    let header: AttemptHeader = decode(cur.part("attempt header")?, "attempt header")?;
    let n = cur.u32("input count")?;
    let mut inputs = Vec::with_capacity(n.min(1024) as usize);
    for i in 0..n {
        inputs.push(WireInput::Encoded(cur.part(&format!("input {i}"))?.to_vec()));
    }
    cur.end("attempt")?;
    Ok(WireAttempt {
        ticket: header.ticket,
        task_key: header.task_key,
        inputs,
        context: header.context,
        timeout: header.timeout,
        result_here: true,
        limits: Vec::new(),
    })
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::context::{FlowRunId, TaskRunId};

    fn attempt(inputs: Vec<WireInput>) -> WireAttempt {
        WireAttempt {
            ticket: 12,
            task_key: "numbers::lengths".into(),
            inputs,
            context: WireContext {
                task_run_id: TaskRunId {
                    flow_run: FlowRunId::new(),
                    node: 3,
                    map_index: None,
                },
                flow: "numbers".into(),
                task: "lengths".into(),
                binding: "bytes".into(),
                attempt: 1,
                scheduled_start: SystemTime::UNIX_EPOCH,
                parameters: serde_json::Map::new(),
            },
            timeout: None,
            result_here: false,
            limits: vec![("db".into(), 2)],
        }
    }

    fn round_trip(frame: &Frame) -> Frame {
        let mut bytes = Vec::new();
        write(&mut bytes, frame).expect("written");
        read(&mut bytes.as_slice()).expect("read back")
    }

    #[test]
    fn a_routed_attempt_carries_what_the_cluster_holds_as_references() {
        let held = |key: &str, path: Vec<u32>| WireInput::Remote {
            key: key.into(),
            path,
        };
        let a = attempt(vec![
            WireInput::Encoded(vec![7]),
            held("tideflow-a-1", vec![]),
            WireInput::Parts(vec![
                held("tideflow-a-2", vec![4]),
                WireInput::Encoded(vec![0xc3]),
                WireInput::Parts(vec![held("tideflow-a-3", vec![0, 1])]),
            ]),
        ]);
        assert_eq!(round_trip(&Frame::Routed(a.clone())), Frame::Routed(a.clone()));
        let mut keys = Vec::new();
        a.inputs.iter().for_each(|i| i.keys(&mut keys));
        assert_eq!(keys, ["tideflow-a-1", "tideflow-a-2", "tideflow-a-3"]);
        // A worker is never sent a reference: only the bridge can fill it in.
        let mut out = Vec::new();
        let err = write(&mut out, &Frame::Attempt(a)).expect_err("not for a worker");
        assert!(err.to_string().contains("held by the cluster"), "{err}");
    }

    #[test]
    fn a_batch_carries_its_children_and_their_references() {
        let mut first = attempt(vec![WireInput::Encoded(vec![1])]);
        first.limits.clear();
        let mut second = first.clone();
        second.ticket = 13;
        second.result_here = true;
        second.inputs = vec![WireInput::Remote {
            key: "tideflow-a-b7".into(),
            path: vec![1],
        }];
        let batch = Frame::Batch(Batch {
            id: 7,
            attempts: vec![first, second],
        });
        assert_eq!(round_trip(&batch), batch);
        let done = Frame::BatchDone(BatchDone {
            batch: 7,
            timed: 2,
            seconds: 0.25,
            last: true,
        });
        assert_eq!(round_trip(&done), done);
    }

    #[test]
    fn held_recomputed_and_release_frames_round_trip() {
        let held = Frame::Held(Held {
            ticket: 3,
            key: "tideflow-a-3".into(),
            bytes: 500_000,
            len: Some(20),
        });
        assert_eq!(round_trip(&held), held);
        assert_eq!(round_trip(&Frame::Recomputed(9)), Frame::Recomputed(9));
        let release = Frame::Release(vec!["tideflow-a-1".into(), "tideflow-a-2".into()]);
        assert_eq!(round_trip(&release), release);
    }
}
