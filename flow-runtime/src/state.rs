//! The states of task runs and flow runs.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The state of a task run (or of a flow run, which uses `Success` and `Failed`).
///
/// `Success`, `Cached`, `Skipped` and `Mapped` are successful; `Failed`, `TimedOut` and
/// `TriggerFailed` are failed. A mapped task ends `Mapped`; its children carry their own states, and a failed
/// child fails the flow when the mapped task is a reference task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum State {
    /// Not started: waiting for its upstream tasks.
    Pending,
    /// The task body is running (attempt number is in the task run).
    Running,
    /// An attempt failed; the next one (`attempt`, counted from 1) starts at `at`.
    Retrying {
        /// The attempt that will run next.
        attempt: u32,
        /// When it will start.
        at: SystemTime,
    },
    /// The task returned a value.
    Success,
    /// The task's result was found without running its body: a cache hit
    /// (`#[task(cache_for = "1h")]`), or a result a restarted flow run reuses.
    Cached,
    /// The task returned an error, signalled failure or panicked, on its last attempt.
    Failed {
        /// The error, signal or panic message.
        message: String,
    },
    /// The attempt ran past the task's `timeout` (a failure, retried like one).
    TimedOut {
        /// Which timeout.
        message: String,
    },
    /// The task did not run because its trigger did not pass, or an input it needs
    /// was not produced.
    TriggerFailed {
        /// Which upstream states failed the trigger.
        message: String,
    },
    /// The task signalled skip, or an upstream task was skipped.
    Skipped {
        /// Why.
        message: String,
    },
    /// A mapped task that has spawned `children` child runs.
    Mapped {
        /// How many children the map spawned.
        children: usize,
    },
    /// The run was cancelled ([`RunHandle::cancel`](crate::RunHandle::cancel)) before this
    /// task run ended: it never started, or its attempt was dropped (async) or abandoned
    /// (sync). A flow run that was cancelled ends `Cancelled` too. Neither successful nor
    /// failed.
    Cancelled {
        /// What was cancelled.
        message: String,
    },
}

impl State {
    /// `Failed` or `TriggerFailed`.
    pub fn is_failed(&self) -> bool {
        matches!(
            self,
            State::Failed { .. } | State::TriggerFailed { .. } | State::TimedOut { .. }
        )
    }

    /// `TimedOut`.
    pub fn is_timed_out(&self) -> bool {
        matches!(self, State::TimedOut { .. })
    }

    /// `TriggerFailed` only.
    pub fn is_trigger_failed(&self) -> bool {
        matches!(self, State::TriggerFailed { .. })
    }

    /// `Success`, `Cached`, `Skipped` or `Mapped`.
    pub fn is_successful(&self) -> bool {
        matches!(
            self,
            State::Success | State::Cached | State::Skipped { .. } | State::Mapped { .. }
        )
    }

    /// `Cached`.
    pub fn is_cached(&self) -> bool {
        matches!(self, State::Cached)
    }

    /// `Success` only.
    pub fn is_success(&self) -> bool {
        matches!(self, State::Success)
    }

    /// `Skipped`.
    pub fn is_skipped(&self) -> bool {
        matches!(self, State::Skipped { .. })
    }

    /// `Mapped`.
    pub fn is_mapped(&self) -> bool {
        matches!(self, State::Mapped { .. })
    }

    /// `Cancelled`.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, State::Cancelled { .. })
    }

    /// `Pending`.
    pub fn is_pending(&self) -> bool {
        matches!(self, State::Pending)
    }

    /// A final state: nothing more will happen to this run.
    pub fn is_finished(&self) -> bool {
        !matches!(self, State::Pending | State::Running | State::Retrying { .. })
    }

    /// The message of a failed or skipped state.
    pub fn message(&self) -> Option<&str> {
        match self {
            State::Failed { message }
            | State::TriggerFailed { message }
            | State::TimedOut { message }
            | State::Skipped { message }
            | State::Cancelled { message } => Some(message),
            _ => None,
        }
    }

    /// The state's name, as logs and summaries print it.
    pub fn name(&self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Running => "Running",
            State::Retrying { .. } => "Retrying",
            State::Success => "Success",
            State::Cached => "Cached",
            State::Failed { .. } => "Failed",
            State::TriggerFailed { .. } => "TriggerFailed",
            State::TimedOut { .. } => "TimedOut",
            State::Skipped { .. } => "Skipped",
            State::Mapped { .. } => "Mapped",
            State::Cancelled { .. } => "Cancelled",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Retrying { attempt, .. } => write!(f, "Retrying (attempt {attempt})"),
            State::Mapped { children } => write!(f, "Mapped ({children} children)"),
            other => match other.message() {
                Some(m) => write!(f, "{}: {m}", other.name()),
                None => f.write_str(other.name()),
            },
        }
    }
}
