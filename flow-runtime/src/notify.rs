//! State handlers: code called on every state transition of a task run or a flow run, and
//! [`SlackNotifier`] (feature `slack`), a handler posting to a Slack incoming webhook.
//!
//! A handler is registered on a flow with [`Flow::on_task_state`](crate::Flow::on_task_state)
//! (every task run of the flow) or [`Flow::on_flow_state`](crate::Flow::on_flow_state) (the
//! flow run itself). The transitions, as in Prefect:
//!
//! - a task run: `Pending → Running` when its first attempt starts, then `Running →
//!   Success`, `Failed`, `TimedOut` or `Skipped` when it ends. An attempt that fails (or
//!   times out) and will be retried gives `Running → Failed` (or `TimedOut`), then
//!   `Failed → Retrying`, then `Retrying → Running` when the next attempt starts.
//! - a task run the scheduler decides without running it: `Pending → TriggerFailed`,
//!   `Pending → Skipped` (an upstream task was skipped), `Pending → Failed`; a mapped task
//!   that expands: `Pending → Mapped` (its children have their own transitions); a task run
//!   whose result is found in the cache or reused by a restart: `Pending → Cached`.
//! - the flow run: `Pending → Running` when it starts, `Running → Success` or `Running →
//!   Failed` when it ends (then [`StateChange::failed_tasks`] lists the failed task runs).
//!
//! A handler runs on the scheduler, at the one point where every transition is recorded,
//! in the order the transitions happen; the run waits for it, so it should be quick (a
//! slow consumer belongs behind an event subscription, see [`crate::event`]). A
//! handler that returns an error or panics is logged (a warning,
//! target `tideflow`) and ignored: it never changes a state or fails a run. A flow with no
//! handler pays nothing for the feature.

use std::error::Error;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::SystemTime;

use crate::context::FlowRunId;
use crate::state::State;

/// What a [`StateHandler`] returns: `Err` is logged and ignored.
pub type HandlerResult = Result<(), Box<dyn Error + Send + Sync>>;

/// One state transition of a task run or of a flow run.
#[derive(Clone, Debug)]
pub struct StateChange {
    pub(crate) flow: &'static str,
    pub(crate) flow_run_id: FlowRunId,
    pub(crate) task: Option<String>,
    pub(crate) old: State,
    pub(crate) new: State,
    pub(crate) at: SystemTime,
    pub(crate) failed_tasks: Vec<String>,
}

impl StateChange {
    /// The flow's name.
    pub fn flow(&self) -> &'static str {
        self.flow
    }

    /// The flow run's id.
    pub fn flow_run_id(&self) -> FlowRunId {
        self.flow_run_id
    }

    /// The task run's full name (`clean`, or `clean[3]` for a mapped child); `None` when
    /// the flow run itself changed state.
    pub fn task(&self) -> Option<&str> {
        self.task.as_deref()
    }

    /// The state before the transition.
    pub fn old(&self) -> &State {
        &self.old
    }

    /// The state after the transition.
    pub fn new_state(&self) -> &State {
        &self.new
    }

    /// When the transition happened.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// For the final transition of a flow run: the full names of its failed task runs
    /// (`Failed`, `TimedOut` or `TriggerFailed`), in graph order. Empty otherwise.
    pub fn failed_tasks(&self) -> &[String] {
        &self.failed_tasks
    }
}

/// Code called on state transitions (see the [module docs](self)).
///
/// Implemented for closures `Fn(&StateChange)` (annotate the argument:
/// `|change: &StateChange| ..`); a handler that can fail implements the trait and returns
/// its error, which the engine logs.
pub trait StateHandler: Send + Sync + 'static {
    /// Called with each transition.
    ///
    /// # Errors
    /// Any error: it is logged at warn level (target `tideflow`) and ignored.
    fn on_change(&self, change: &StateChange) -> HandlerResult;
}

impl<F> StateHandler for F
where
    F: Fn(&StateChange) + Send + Sync + 'static,
{
    fn on_change(&self, change: &StateChange) -> HandlerResult {
        self(change);
        Ok(())
    }
}

/// The handlers registered on a flow, for its task runs or for the flow run.
#[derive(Clone, Default)]
pub(crate) struct Handlers(pub(crate) Vec<Arc<dyn StateHandler>>);

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} state handler(s)", self.0.len())
    }
}

impl Handlers {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Calls every handler with `change`; errors and panics are logged and ignored.
    pub(crate) fn call(&self, change: &StateChange) {
        call_all(&self.0, change);
    }
}

/// Calls each handler with `change`; errors and panics are logged and ignored.
pub(crate) fn call_all(handlers: &[Arc<dyn StateHandler>], change: &StateChange) {
    for handler in handlers {
        let task = change.task.as_deref().unwrap_or("(flow run)");
        match panic::catch_unwind(AssertUnwindSafe(|| handler.on_change(change))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                target: "tideflow",
                task = %task,
                transition = %format_args!("{} -> {}", change.old.name(), change.new.name()),
                error = %e,
                "a state handler failed; ignored"
            ),
            Err(payload) => {
                let message = if let Some(s) = payload.downcast_ref::<&str>() {
                    (*s).to_owned()
                } else if let Some(s) = payload.downcast_ref::<String>() {
                    s.clone()
                } else {
                    "(no message)".to_owned()
                };
                tracing::warn!(
                    target: "tideflow",
                    task = %task,
                    transition = %format_args!("{} -> {}", change.old.name(), change.new.name()),
                    error = %message,
                    "a state handler panicked; ignored"
                )
            }
        }
    }
}

/// The kind of a [`State`], without its data: what [`SlackNotifier::only_states`] filters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateKind {
    /// [`State::Pending`].
    Pending,
    /// [`State::Running`].
    Running,
    /// [`State::Retrying`].
    Retrying,
    /// [`State::Success`].
    Success,
    /// [`State::Cached`].
    Cached,
    /// [`State::Failed`].
    Failed,
    /// [`State::TimedOut`].
    TimedOut,
    /// [`State::TriggerFailed`].
    TriggerFailed,
    /// [`State::Skipped`].
    Skipped,
    /// [`State::Mapped`].
    Mapped,
    /// [`State::Cancelled`].
    Cancelled,
}

impl State {
    /// The state's kind, without its data.
    pub fn kind(&self) -> StateKind {
        match self {
            State::Pending => StateKind::Pending,
            State::Running => StateKind::Running,
            State::Retrying { .. } => StateKind::Retrying,
            State::Success => StateKind::Success,
            State::Cached => StateKind::Cached,
            State::Failed { .. } => StateKind::Failed,
            State::TimedOut { .. } => StateKind::TimedOut,
            State::TriggerFailed { .. } => StateKind::TriggerFailed,
            State::Skipped { .. } => StateKind::Skipped,
            State::Mapped { .. } => StateKind::Mapped,
            State::Cancelled { .. } => StateKind::Cancelled,
        }
    }
}

#[cfg(feature = "slack")]
pub use slack::SlackNotifier;

#[cfg(feature = "slack")]
mod slack {
    use std::fmt::Write as _;
    use std::time::Duration;

    use super::{HandlerResult, StateChange, StateHandler, StateKind};
    use crate::context::{Secret, SecretError};

    /// At most this many failed task runs are named in a message.
    const LISTED: usize = 10;

    /// A [`StateHandler`] posting each transition it sees to a Slack incoming webhook, in
    /// Slack's message format (a `text` fallback and a `section` block in mrkdwn) naming
    /// the flow, the new state, the run id, the task run (for a task handler) and the
    /// failed task runs (for a flow run that failed).
    ///
    /// ```no_run
    /// # use flow_runtime::{SlackNotifier, StateKind, Flow};
    /// # fn f(flow: Flow<()>) -> Result<(), Box<dyn std::error::Error>> {
    /// let notifier = SlackNotifier::from_secret("SLACK_WEBHOOK_URL")?
    ///     .only_states([StateKind::Success, StateKind::Failed]);
    /// let flow = flow.on_flow_state(notifier);
    /// # Ok(()) }
    /// ```
    ///
    /// By default every transition is posted (as Prefect's notifier does); use
    /// [`SlackNotifier::only_states`] to pick the new states worth a message. The post is
    /// synchronous, bounded by a timeout (5 s by default, [`SlackNotifier::timeout`]): a
    /// webhook that is down, slow or answers an error is logged as a warning, and the run
    /// goes on. The webhook URL is a [`Secret`]: it is never logged.
    #[derive(Clone)]
    pub struct SlackNotifier {
        url: Secret,
        only: Option<Vec<StateKind>>,
        timeout: Duration,
        agent: ureq::Agent,
    }

    impl std::fmt::Debug for SlackNotifier {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SlackNotifier")
                .field("url", &self.url)
                .field("only_states", &self.only)
                .field("timeout", &self.timeout)
                .finish()
        }
    }

    impl SlackNotifier {
        /// The default bound on one post: connecting, sending and reading the answer.
        pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

        /// A notifier posting to the webhook URL `url`.
        pub fn new(url: Secret) -> Self {
            SlackNotifier {
                url,
                only: None,
                timeout: Self::DEFAULT_TIMEOUT,
                agent: agent(Self::DEFAULT_TIMEOUT),
            }
        }

        /// A notifier posting to the webhook URL held by the environment variable `name`
        /// (read with [`Secret::from_env`]).
        ///
        /// # Errors
        /// [`SecretError`] when the variable is not set or not unicode.
        pub fn from_secret(name: &str) -> Result<Self, SecretError> {
            Secret::from_env(name).map(Self::new)
        }

        /// Posts only transitions into these states.
        pub fn only_states(mut self, kinds: impl IntoIterator<Item = StateKind>) -> Self {
            self.only = Some(kinds.into_iter().collect());
            self
        }

        /// Bounds each post by `limit` instead of 5 s.
        pub fn timeout(mut self, limit: Duration) -> Self {
            self.timeout = limit;
            self.agent = agent(limit);
            self
        }

        /// Whether a transition into `kind` is posted.
        pub fn wants(&self, kind: StateKind) -> bool {
            self.only.as_ref().is_none_or(|only| only.contains(&kind))
        }

        /// The JSON message posted for `change`.
        pub fn message(change: &StateChange) -> serde_json::Value {
            let state = change.new_state().name();
            let mut text = match change.task() {
                Some(task) => format!(
                    "Task run `{task}` of flow `{}` is now {state} (flow run {})",
                    change.flow(),
                    change.flow_run_id()
                ),
                None => format!(
                    "Flow run of `{}` is now {state} (flow run {})",
                    change.flow(),
                    change.flow_run_id()
                ),
            };
            let failed = change.failed_tasks();
            if !failed.is_empty() {
                text.push_str("\nFailed task runs: ");
                for (i, name) in failed.iter().take(LISTED).enumerate() {
                    if i > 0 {
                        text.push_str(", ");
                    }
                    let _ = write!(text, "`{name}`");
                }
                if failed.len() > LISTED {
                    let _ = write!(text, " and {} more", failed.len() - LISTED);
                }
            }
            let mrkdwn = match change.task() {
                Some(task) => format!(
                    "*{state}*: task run `{task}` of flow *{}*\nFlow run id: `{}`",
                    change.flow(),
                    change.flow_run_id()
                ),
                None => format!(
                    "*{state}*: flow *{}*\nFlow run id: `{}`",
                    change.flow(),
                    change.flow_run_id()
                ),
            };
            let mrkdwn = match text.split_once('\n') {
                Some((_, failed)) => format!("{mrkdwn}\n{failed}"),
                None => mrkdwn,
            };
            serde_json::json!({
                "text": text,
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text": mrkdwn } }
                ]
            })
        }
    }

    fn agent(timeout: Duration) -> ureq::Agent {
        ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .build(),
        )
    }

    impl StateHandler for SlackNotifier {
        fn on_change(&self, change: &StateChange) -> HandlerResult {
            if !self.wants(change.new_state().kind()) {
                return Ok(());
            }
            let body = Self::message(change).to_string();
            let url = self.url.expose();
            // An error's text may quote the URL: it never leaves here with it.
            let scrub = |e: String| e.replace(url, "***");
            let response = self
                .agent
                .post(url)
                .content_type("application/json")
                .send(&body)
                .map_err(|e| format!("posting to the Slack webhook failed: {}", scrub(e.to_string())))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("the Slack webhook answered {status}").into());
            }
            Ok(())
        }
    }
}
