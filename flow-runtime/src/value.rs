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
