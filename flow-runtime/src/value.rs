//! Type-erased task values.
//!
//! Every result a task produces is stored once, behind an [`Arc`], and handed to each
//! consumer without copying. A consumer that takes its input by value receives the value
//! itself when it is the last holder and a clone otherwise; a consumer that takes `&T`
//! borrows it.

use std::any::Any;
use std::sync::Arc;

use crate::error::TaskError;

/// A task input or result whose type the compiler has already checked.
pub type Value = Arc<dyn Any + Send + Sync>;

/// Wraps a typed value.
#[inline]
pub fn value<T: Send + Sync + 'static>(v: T) -> Value {
    Arc::new(v)
}

/// Takes a `T` out of a value: moved when this is the last holder, cloned otherwise.
///
/// # Errors
/// A value of another type, which the checks `flow!` emits make impossible for wired
/// graphs; the error names both types so a hand-built graph is easy to fix.
#[inline]
pub fn take<T: Clone + Send + Sync + 'static>(v: Value) -> Result<T, TaskError> {
    match v.downcast::<T>() {
        Ok(arc) => Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone())),
        Err(_) => Err(type_mismatch::<T>()),
    }
}

/// Borrows a `T` inside a value.
///
/// # Errors
/// As [`take`].
#[inline]
pub fn borrow<T: 'static>(v: &Value) -> Result<&T, TaskError> {
    v.downcast_ref::<T>().ok_or_else(type_mismatch::<T>)
}

fn type_mismatch<T>() -> TaskError {
    TaskError::fail(format!(
        "input is not a `{}`: the graph was wired by hand with a wrong type",
        std::any::type_name::<T>()
    ))
}

/// Writes a `T` held in a value as JSON (see [`crate::task::TaskCodec`]).
///
/// # Errors
/// A value of another type, or a `T` serde cannot write as JSON (e.g. a map whose keys
/// are not strings or numbers).
pub fn encode_json<T: serde::Serialize + 'static>(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let t = v
        .downcast_ref::<T>()
        .ok_or_else(|| format!("the value is not a `{}`", std::any::type_name::<T>()))?;
    serde_json::to_writer(out, t).map_err(|e| e.to_string())
}

/// Reads a `T` from JSON into a value.
///
/// # Errors
/// JSON that is malformed or does not describe a `T`: serde's message, with line and column.
pub fn decode_json<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
    bytes: &[u8],
) -> Result<Value, String> {
    serde_json::from_slice::<T>(bytes)
        .map(value)
        .map_err(|e| format!("not a valid `{}`: {e}", std::any::type_name::<T>()))
}
