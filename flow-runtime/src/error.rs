//! Errors: what a task signals, and what a flow reports.

use std::error::Error as StdError;
use std::fmt;

/// What a task body returns when it does not produce a value.
///
/// Any `std::error::Error` converts into it with `?`, as a failure. [`TaskError::skip`]
/// ends the task `Skipped` (and, by default, skips what depends on it);
/// [`TaskError::fail`] ends the attempt `Failed` with a message.
///
/// Like `anyhow::Error`, `TaskError` does not implement `std::error::Error` itself, which
/// is what lets every error type convert into it.
pub struct TaskError {
    kind: SignalKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

/// Which signal a [`TaskError`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalKind {
    /// The attempt failed; it is retried while retries remain.
    Fail,
    /// The task is skipped; it is never retried.
    Skip,
    /// The attempt failed and must be retried, even past `max_retries` (Prefect's RETRY).
    Retry,
}

impl TaskError {
    /// Fails this attempt with a message.
    pub fn fail(message: impl Into<String>) -> Self {
        TaskError {
            kind: SignalKind::Fail,
            message: message.into(),
            source: None,
        }
    }

    /// Skips the task: it ends `Skipped`, and downstream tasks with
    /// `skip_on_upstream_skip` (the default) are skipped too.
    pub fn skip(message: impl Into<String>) -> Self {
        TaskError {
            kind: SignalKind::Skip,
            message: message.into(),
            source: None,
        }
    }

    /// Fails this attempt and asks for another one, even when `max_retries` is used up
    /// (the wait is the task's retry delay). A task that always signals retry never ends:
    /// bound it yourself, e.g. with [`crate::TaskContext::attempt`].
    pub fn retry(message: impl Into<String>) -> Self {
        TaskError {
            kind: SignalKind::Retry,
            message: message.into(),
            source: None,
        }
    }

    /// The error this one was converted from, if it is an `E`: `retry_on` predicates use
    /// it to retry only some errors.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.source.as_deref()?.downcast_ref::<E>()
    }

    /// The signal.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// `true` for [`TaskError::skip`].
    pub fn is_skip(&self) -> bool {
        self.kind == SignalKind::Skip
    }

    /// The message, with the chain of sources for a converted error.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The error this one was converted from.
    pub fn source(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut next = self.source.as_deref().and_then(|e| e.source());
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("kind", &self.kind)
            .field("message", &self.to_string())
            .finish()
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        TaskError {
            kind: SignalKind::Fail,
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}

/// What a flow reports: a failed run, or a parameter or option that was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowError {
    /// The flow run ended `Failed`.
    #[error("flow `{flow}` failed: {}", describe_failures(.failed))]
    Failed {
        /// The flow's name.
        flow: String,
        /// Each failed task run (`clean[3]`) with its state.
        failed: Vec<(String, String)>,
    },
    /// `with_param` named a parameter the flow does not declare.
    #[error("flow `{flow}` has no parameter `{name}`; its parameters are: {known}")]
    UnknownParam {
        /// The flow's name.
        flow: String,
        /// The name given.
        name: String,
        /// The declared parameters, with their types.
        known: String,
    },
    /// A parameter value does not fit the parameter's type.
    #[error("parameter `{name}` of flow `{flow}` expects a `{expected}`: {reason}")]
    InvalidParam {
        /// The flow's name.
        flow: String,
        /// The parameter.
        name: String,
        /// Its declared type.
        expected: String,
        /// What was wrong with the value given.
        reason: String,
    },
    /// A reference task name that is not a task of the flow.
    #[error("flow `{flow}` has no task `{name}`; its tasks are: {known}")]
    UnknownTask {
        /// The flow's name.
        flow: String,
        /// The name given.
        name: String,
        /// The flow's task names.
        known: String,
    },
    /// `Flow::restart` named a run the result store holds no record of.
    #[error(
        "no stored run `{run}` of flow `{flow}` in {store}: only runs of flows that persist results \
         can be restarted (`#[task(persist)]` on tasks, or `Flow::persist_results()`), from the same result store"
    )]
    RunNotFound {
        /// The flow's name.
        flow: String,
        /// The run id given.
        run: String,
        /// The result store's directory.
        store: String,
    },
    /// `Flow::restart` named a run of another flow.
    #[error("run `{run}` is a run of flow `{other}`, not of flow `{flow}`: restart it with `{other}`")]
    RunOfAnotherFlow {
        /// The flow asked to restart.
        flow: String,
        /// The run id given.
        run: String,
        /// The flow the run belongs to.
        other: String,
    },
    /// The stored record of a run cannot be read.
    #[error("the stored record of run `{run}` at {path} cannot be read: {reason}")]
    RunRecordUnreadable {
        /// The run id given.
        run: String,
        /// The record's file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// An executor that cannot be set up as asked (a cluster address that is not one).
    #[error("{0}")]
    Executor(String),
}

fn describe_failures(failed: &[(String, String)]) -> String {
    if failed.is_empty() {
        return "no task failed, but the flow produced no output".to_owned();
    }
    // Name the task runs that failed by themselves; count the ones that did not run
    // because of them.
    let (downstream, roots): (Vec<_>, Vec<_>) = failed
        .iter()
        .partition(|(_, state)| state.starts_with("TriggerFailed"));
    let mut text = roots
        .iter()
        .take(10)
        .map(|(task, state)| format!("`{task}` ({state})"))
        .collect::<Vec<_>>()
        .join(", ");
    if roots.len() > 10 {
        text.push_str(&format!(" and {} more", roots.len() - 10));
    }
    match (roots.is_empty(), downstream.len()) {
        (true, _) => downstream
            .iter()
            .take(10)
            .map(|(task, state)| format!("`{task}` ({state})"))
            .collect::<Vec<_>>()
            .join(", "),
        (false, 0) => text,
        (false, 1) => format!("{text}; 1 downstream task run did not run (TriggerFailed)"),
        (false, n) => format!("{text}; {n} downstream task runs did not run (TriggerFailed)"),
    }
}
