//! The form of an attempt and of its end that can cross a process: what a backend in
//! another process (a worker on a cluster) receives and answers.
//!
//! An attempt names its task by the key it is registered under ([`crate::find_task`]),
//! carries its inputs encoded with the task's codec (or references to data a backend
//! holds) and a context that serializes; its end is plain data. Nothing here holds a
//! `Box<dyn Any>`, a span or a handler.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::backend::{Attempt, AttemptEnd};
use crate::context::TaskRunId;
use crate::error::SignalKind;
use crate::value::{Data, Form};

/// One attempt, ready to cross a process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireAttempt {
    /// The scheduler's handle on the task run; the answer carries it back.
    pub ticket: u32,
    /// The task's registered key (`module::path::function`).
    pub task_key: String,
    /// One input per data parameter, in order.
    pub inputs: Vec<WireInput>,
    /// What the body may read of its run.
    pub context: WireContext,
    /// How long the attempt may run.
    pub timeout: Option<Duration>,
    /// The coordinator needs the result itself (a task here reads it, it is stored, or
    /// it is the flow's output): a cluster sends it back instead of keeping it.
    pub result_here: bool,
    /// Cluster-wide limits the attempt holds a slot of while it runs, by tag: a cluster
    /// fills them in from its own tag limits (`DaskExecutor::tag_limit`).
    #[serde(default)]
    pub limits: Vec<(String, u32)>,
}

/// One input of a [`WireAttempt`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireInput {
    /// The value, in the task's wire format.
    Encoded(Vec<u8>),
    /// Data a backend holds, by the key it knows it under; for an element of a list it
    /// holds, the element's index in each enclosing list.
    Remote {
        /// The backend's key.
        key: String,
        /// Indices into the held list (empty: the whole result).
        path: Vec<u32>,
    },
    /// A list (or tuple) of these parts, built where the attempt runs.
    Parts(Vec<WireInput>),
}

impl WireInput {
    /// Every backend key this input refers to, in order, each once.
    pub fn keys<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            WireInput::Encoded(_) => {}
            WireInput::Remote { key, .. } => {
                if !out.contains(&key.as_str()) {
                    out.push(key);
                }
            }
            WireInput::Parts(parts) => parts.iter().for_each(|p| p.keys(out)),
        }
    }
}

/// The serializable part of a [`crate::TaskContext`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireContext {
    /// The task run.
    pub task_run_id: TaskRunId,
    /// The flow's name.
    pub flow: String,
    /// The task's name.
    pub task: String,
    /// The task's name in the flow (its binding).
    pub binding: String,
    /// The attempt, counted from 1.
    pub attempt: u32,
    /// When this attempt was scheduled to start.
    pub scheduled_start: SystemTime,
    /// The flow run's parameters, as JSON.
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// How an attempt ended, as it crosses back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireEnd {
    /// The body returned a value: in the task's wire format.
    Returned(Vec<u8>),
    /// The body returned an error or a signal.
    Failed {
        /// The error's message.
        message: String,
        /// Fail, skip or retry.
        signal: WireSignal,
        /// The task's `retry_on` wants this error retried.
        retry_wanted: bool,
    },
    /// The body panicked: its message.
    Panicked(String),
    /// The attempt ran past its timeout.
    TimedOut(Duration),
}

/// [`SignalKind`] as it crosses a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireSignal {
    /// The attempt failed.
    Fail,
    /// The task skipped.
    Skip,
    /// The attempt asked for another one.
    Retry,
}

impl From<SignalKind> for WireSignal {
    fn from(kind: SignalKind) -> Self {
        match kind {
            SignalKind::Skip => WireSignal::Skip,
            SignalKind::Retry => WireSignal::Retry,
            _ => WireSignal::Fail,
        }
    }
}

impl From<WireSignal> for SignalKind {
    fn from(s: WireSignal) -> Self {
        match s {
            WireSignal::Fail => SignalKind::Fail,
            WireSignal::Skip => SignalKind::Skip,
            WireSignal::Retry => SignalKind::Retry,
        }
    }
}

impl Attempt {
    /// The attempt's wire form: inputs encoded with the task's codec, or, for data a
    /// backend holds, references to it.
    ///
    /// # Errors
    /// The task has no codec (`#[task(local)]`: it runs in this process only), or an
    /// input cannot be encoded; the message names the task and the input.
    pub(crate) fn to_wire(&self) -> Result<WireAttempt, String> {
        let def = self.def;
        let codec = def.codec.ok_or_else(|| {
            format!(
                "task `{}` is `#[task(local)]`: its values cannot leave this process",
                def.name
            )
        })?;
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for (i, (encode, v)) in codec.pack_inputs.iter().zip(&self.inputs).enumerate() {
            let data = Data::from_raw(Arc::clone(v));
            inputs.push(wire_input(&data, Some(*encode)).map_err(|e| {
                let param = def.params.get(i).map_or("?", |p| p.name);
                format!("input `{param}` of task `{}` cannot be encoded: {e}", def.name)
            })?);
        }
        let ctx = &self.ctx;
        Ok(WireAttempt {
            ticket: self.ticket,
            task_key: def.key.to_owned(),
            inputs,
            context: WireContext {
                task_run_id: ctx.id,
                flow: ctx.flow_name.to_owned(),
                task: ctx.task_name.to_owned(),
                binding: ctx.binding.to_string(),
                attempt: ctx.attempt,
                scheduled_start: ctx.scheduled_start,
                parameters: (*ctx.params).clone(),
            },
            timeout: self.timeout,
            result_here: self.result_here,
            limits: Vec::new(),
        })
    }
}

/// Data in its wire form: a value here written with `pack`, data a backend holds as a
/// reference to it.
fn wire_input(data: &Data, pack: Option<crate::task::EncodeFn>) -> Result<WireInput, String> {
    let local = match data.form() {
        Form::Remote(r) => {
            return Ok(WireInput::Remote {
                key: r.key.as_str().to_owned(),
                path: r.path.clone(),
            })
        }
        Form::Parts(parts) => {
            return parts
                .iter()
                .map(|(part, pack)| wire_input(part, pack))
                .collect::<Result<_, _>>()
                .map(WireInput::Parts)
        }
        Form::Local(v) => Arc::clone(v),
        Form::Encoded(_) => data.to_local().map_err(|e| e.to_string())?,
    };
    let pack = pack.ok_or("a part of it has no wire format")?;
    let mut bytes = Vec::new();
    pack(&local, &mut bytes)?;
    Ok(WireInput::Encoded(bytes))
}

// `to_wire` is the worker's side; the coordinator only reads ends back.
#[allow(dead_code)]
impl AttemptEnd {
    /// The end's wire form: a returned value encoded with the codec of task `def`.
    ///
    /// # Errors
    /// The task has no codec, or its value cannot be encoded.
    pub(crate) fn to_wire(&self, def: &crate::task::TaskDef) -> Result<WireEnd, String> {
        Ok(match self {
            AttemptEnd::Returned(v) => {
                let codec = def
                    .codec
                    .ok_or_else(|| format!("task `{}` is `#[task(local)]`", def.name))?;
                let mut bytes = Vec::new();
                (codec.pack_output)(v, &mut bytes)
                    .map_err(|e| format!("the result of task `{}` cannot be encoded: {e}", def.name))?;
                WireEnd::Returned(bytes)
            }
            AttemptEnd::Failed {
                message,
                signal,
                retry_wanted,
            } => WireEnd::Failed {
                message: message.clone(),
                signal: (*signal).into(),
                retry_wanted: *retry_wanted,
            },
            AttemptEnd::Panicked(m) => WireEnd::Panicked(m.clone()),
            AttemptEnd::TimedOut(d) => WireEnd::TimedOut(*d),
        })
    }

    /// An end read back from its wire form: a returned value decoded with the codec of
    /// task `def`.
    ///
    /// # Errors
    /// The task has no codec, or the bytes are not a value of its output type.
    pub(crate) fn from_wire(wire: WireEnd, def: &crate::task::TaskDef) -> Result<AttemptEnd, String> {
        Ok(match wire {
            WireEnd::Returned(bytes) => {
                let codec = def
                    .codec
                    .ok_or_else(|| format!("task `{}` is `#[task(local)]`", def.name))?;
                AttemptEnd::Returned((codec.unpack_output)(&bytes)?)
            }
            WireEnd::Failed {
                message,
                signal,
                retry_wanted,
            } => AttemptEnd::Failed {
                message,
                signal: signal.into(),
                retry_wanted,
            },
            WireEnd::Panicked(m) => AttemptEnd::Panicked(m),
            WireEnd::TimedOut(d) => AttemptEnd::TimedOut(d),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{FlowRunId, TaskContext};
    use crate::error::TaskError;
    use crate::task::DecodeFn;
    use crate::task::{EncodeFn, TaskBody, TaskCodec, TaskDef, TaskOptions, TaskParam};
    use crate::value::{self, decode_json, encode_json, pack, unpack, Value};

    fn add1(inputs: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
        let x = value::borrow::<u64>(&inputs[0])?;
        Ok(value::value(x + 1))
    }

    static INPUTS: [EncodeFn; 1] = [encode_json::<u64>];
    static PACK_INPUTS: [EncodeFn; 1] = [pack::<u64>];
    static UNPACK_INPUTS: [DecodeFn; 1] = [unpack::<u64>];
    static CODEC: TaskCodec = TaskCodec {
        encode_output: encode_json::<u64>,
        decode_output: decode_json::<u64>,
        encode_inputs: &INPUTS,
        pack_output: pack::<u64>,
        unpack_output: unpack::<u64>,
        pack_inputs: &PACK_INPUTS,
        unpack_inputs: &UNPACK_INPUTS,
    };
    static ADD1: TaskDef = TaskDef {
        name: "add1",
        key: "wire::tests::add1",
        options: TaskOptions::DEFAULT,
        params: &[TaskParam { name: "x", ty: "u64" }],
        output: "u64",
        body: TaskBody::Sync(add1),
        codec: Some(&CODEC),
    };
    static LOCAL: TaskDef = TaskDef {
        codec: None,
        name: "local_add1",
        ..ADD1
    };

    fn attempt(def: &'static TaskDef) -> Attempt {
        Attempt {
            ticket: 7,
            def,
            inputs: vec![value::value(41u64)],
            ctx: TaskContext {
                id: TaskRunId {
                    flow_run: FlowRunId::new(),
                    node: 2,
                    map_index: Some(5),
                },
                flow_name: "numbers",
                task_name: def.name,
                binding: Arc::from("added"),
                attempt: 3,
                scheduled_start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                params: Arc::new(
                    serde_json::json!({"n": 10})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
            },
            timeout: Some(Duration::from_secs(2)),
            retry_on: None,
            report_start: false,
            result_here: false,
        }
    }

    #[test]
    fn an_attempt_crosses_as_its_task_key_encoded_inputs_and_context() {
        let a = attempt(&ADD1);
        let wire = a.to_wire().expect("add1 has a codec");
        assert_eq!(wire.ticket, 7);
        assert_eq!(wire.task_key, "wire::tests::add1");
        // MessagePack: 41 is one byte.
        assert_eq!(wire.inputs, [WireInput::Encoded(vec![41])]);
        assert_eq!(wire.timeout, Some(Duration::from_secs(2)));
        assert_eq!(wire.context.task_run_id, a.ctx.id);
        assert_eq!(
            (
                wire.context.flow.as_str(),
                wire.context.task.as_str(),
                wire.context.binding.as_str()
            ),
            ("numbers", "add1", "added")
        );
        assert_eq!(wire.context.attempt, 3);
        assert_eq!(wire.context.parameters.get("n"), Some(&serde_json::json!(10)));
        // It is plain data: it survives a serde round trip unchanged.
        let text = serde_json::to_string(&wire).expect("serializes");
        let back: WireAttempt = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, wire);
    }

    #[test]
    fn data_the_cluster_holds_crosses_as_references_and_parts_as_pieces() {
        use crate::value::{RemoteKey, RemoteRef};
        let list = Data::remote(RemoteRef::new(RemoteKey::unmanaged("tideflow-x-4"), Some(3)));
        let second = list
            .elements(|_| Vec::new())
            .expect("its length is known")
            .swap_remove(1);
        let mut a = attempt(&ADD1);
        a.inputs = vec![second.clone().into_raw()];
        let wire = a.to_wire().expect("crosses");
        assert_eq!(
            wire.inputs,
            [WireInput::Remote {
                key: "tideflow-x-4".into(),
                path: vec![1]
            }]
        );
        // A reduce over a returned part and a held one: the returned part is written
        // with the producer's codec, the held one stays a reference.
        let parts = Data::collect(
            vec![Data::local(value::value(5u64)), second],
            |_| value::value(()),
            |_| Some(pack::<u64>),
        )
        .expect("kept as parts");
        a.inputs = vec![parts.into_raw()];
        let wire = a.to_wire().expect("crosses");
        assert_eq!(
            wire.inputs,
            [WireInput::Parts(vec![
                WireInput::Encoded(vec![5]),
                WireInput::Remote {
                    key: "tideflow-x-4".into(),
                    path: vec![1]
                }
            ])]
        );
    }

    #[test]
    fn an_attempt_of_a_local_task_cannot_cross() {
        let err = attempt(&LOCAL).to_wire().expect_err("a local task has no codec");
        assert_eq!(
            err,
            "task `local_add1` is `#[task(local)]`: its values cannot leave this process"
        );
    }

    #[test]
    fn every_end_crosses_back_as_plain_data() {
        let returned = AttemptEnd::Returned(value::value(42u64));
        let wire = returned.to_wire(&ADD1).expect("encodes");
        assert_eq!(wire, WireEnd::Returned(vec![42]));
        match AttemptEnd::from_wire(wire, &ADD1).expect("decodes") {
            AttemptEnd::Returned(v) => assert_eq!(value::borrow::<u64>(&v).ok(), Some(&42)),
            other => panic!("not returned: {other:?}"),
        }
        let failed = AttemptEnd::Failed {
            message: "boom".into(),
            signal: crate::error::SignalKind::Retry,
            retry_wanted: false,
        };
        let wire = failed.to_wire(&ADD1).expect("plain");
        assert_eq!(
            wire,
            WireEnd::Failed {
                message: "boom".into(),
                signal: WireSignal::Retry,
                retry_wanted: false
            }
        );
        assert!(matches!(
            AttemptEnd::from_wire(wire, &ADD1),
            Ok(AttemptEnd::Failed {
                signal: crate::error::SignalKind::Retry,
                ..
            })
        ));
        let panicked = AttemptEnd::Panicked("task panicked: oops".into()).to_wire(&ADD1);
        assert_eq!(panicked, Ok(WireEnd::Panicked("task panicked: oops".into())));
        let timed_out = AttemptEnd::TimedOut(Duration::from_millis(50)).to_wire(&ADD1);
        assert_eq!(timed_out, Ok(WireEnd::TimedOut(Duration::from_millis(50))));
        // Bytes that are not a `u64` are an error naming the type, not a panic.
        let bad = AttemptEnd::from_wire(WireEnd::Returned(vec![0xa1, b'x']), &ADD1);
        assert!(
            matches!(&bad, Err(e) if e.contains("not a valid `u64`")),
            "{:?}",
            bad.err()
        );
    }
}
