//! The built-in tasks behind `if` in a flow: a gate per branch, a merge per value.
//!
//! `flow!` turns `if flag { a(x) } else { b(x) }` into one gate per branch, named
//! `if flag` and `else flag`. A gate reads the condition and succeeds when it selects its
//! branch; otherwise it ends `Skipped`. Every task call in a branch runs after the
//! branch's gate, so the branch that is not taken is skipped as a whole (the engine skips
//! a task whose gate skipped, whatever its trigger options), and skips propagate
//! downstream as usual.
//!
//! When the `if` gives a value (`let y = if flag { a(x) } else { b(x) };`), a merge reads
//! every branch's value gathered with its gate ([`Source::First`]) and passes on the one
//! of the branch that ran. It runs whatever its upstream states (`all_finished`, no skip
//! on upstream skip) and ends:
//! - `Success` with the value of the branch that ran;
//! - `TriggerFailed` when the branch that ran failed (naming its task), or when the
//!   condition failed and no branch ran;
//! - `Skipped` when skips left no value: the condition itself was skipped, or a task of
//!   the branch that ran was.
//!
//! They are registered like user tasks, under the keys `tideflow::branch::if`,
//! `tideflow::branch::else` and `tideflow::branch::merge`.
//!
//! [`Source::First`]: crate::graph::Source::First

use crate::context::TaskContext;
use crate::error::TaskError;
use crate::task::{TaskBody, TaskDef, TaskOptions, TaskParam, TaskRegistration, Trigger};
use crate::value::{self, Value};

/// The gate of a branch taken when the condition is `true`.
pub(crate) static IF: TaskDef = TaskDef {
    name: "if",
    key: "tideflow::branch::if",
    options: GATE_OPTIONS,
    params: GATE_PARAMS,
    output: "()",
    body: TaskBody::Sync(if_body),
    codec: None,
};

/// The gate of a branch taken when the condition is `false`.
pub(crate) static ELSE: TaskDef = TaskDef {
    name: "else",
    key: "tideflow::branch::else",
    options: GATE_OPTIONS,
    params: GATE_PARAMS,
    output: "()",
    body: TaskBody::Sync(else_body),
    codec: None,
};

/// The value of whichever branch of an `if` ran.
pub(crate) static MERGE: TaskDef = TaskDef {
    name: "merge",
    key: "tideflow::branch::merge",
    options: TaskOptions {
        trigger: Trigger::AllFinished,
        skip_on_upstream_skip: false,
        local: true,
        ..TaskOptions::DEFAULT
    },
    params: &[TaskParam {
        name: "value",
        ty: "_",
    }],
    output: "_",
    body: TaskBody::Sync(merge_body),
    codec: None,
};

inventory::submit! { TaskRegistration { def: &IF } }
inventory::submit! { TaskRegistration { def: &ELSE } }
inventory::submit! { TaskRegistration { def: &MERGE } }

/// A gate runs on the scheduler's side: it reads a `bool` and carries no data.
const GATE_OPTIONS: TaskOptions = TaskOptions {
    local: true,
    ..TaskOptions::DEFAULT
};

/// The condition, and its text as written in the flow (a constant), for the skip message.
const GATE_PARAMS: &[TaskParam] = &[
    TaskParam {
        name: "condition",
        ty: "bool",
    },
    TaskParam {
        name: "text",
        ty: "&str",
    },
];

fn if_body(inputs: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    gate(&inputs, true)
}

fn else_body(inputs: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    gate(&inputs, false)
}

/// Succeeds when the condition is `when`; skips the branch otherwise.
fn gate(inputs: &[Value], when: bool) -> Result<Value, TaskError> {
    let [condition, text] = inputs else {
        return Err(TaskError::fail(format!(
            "a branch gate takes a condition and its text, but it was given {} input(s)",
            inputs.len()
        )));
    };
    let condition = *value::borrow::<bool>(condition)?;
    let text = value::borrow::<&'static str>(text).map_or("the condition", |t| *t);
    if condition == when {
        Ok(value::value(()))
    } else {
        Err(TaskError::skip(format!("condition `{text}` was {condition}")))
    }
}

/// Passes on the value of the branch that ran (the engine hands over only that one).
fn merge_body(mut inputs: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    match (inputs.pop(), inputs.is_empty()) {
        (Some(v), true) => Ok(v),
        _ => Err(TaskError::fail(
            "the merge of an `if` takes one input: the value of the branch that ran",
        )),
    }
}
