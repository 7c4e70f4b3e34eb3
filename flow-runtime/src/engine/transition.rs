//! The one transition point: every state change of a task run, a mapped child or the flow
//! run goes through [`Transitions::task`] or [`Transitions::flow`], which write it in the
//! run record, log it, call the state handlers and publish it to the run's subscribers.
//! Nothing else writes a state.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::context::{FlowRunId, TaskRunId};
use crate::event::{Publisher, RunEvent};
use crate::notify::{Handlers, StateChange};
use crate::state::State;

/// A task run, or a mapped task as a whole: which node, which child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct UpId {
    pub(super) node: usize,
    pub(super) index: Option<u32>,
}

impl UpId {
    pub(super) fn own(node: usize) -> Self {
        UpId { node, index: None }
    }

    pub(super) fn child(node: usize, index: usize) -> Self {
        UpId {
            node,
            index: Some(index as u32),
        }
    }
}

/// `clean[3]` or `clean`, without allocating.
pub(super) struct FullName<'a>(pub(super) &'a str, pub(super) Option<u32>);

impl fmt::Display for FullName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(i) => write!(f, "{}[{i}]", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// Wall-clock timestamps from monotonic readings: one system-time read per flow run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    instant: Instant,
    system: SystemTime,
}

impl Clock {
    pub(super) fn start() -> Self {
        Clock {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    /// The wall-clock time of a monotonic reading taken during the run.
    pub(super) fn system_time(&self, at: Instant) -> SystemTime {
        self.system + at.saturating_duration_since(self.instant)
    }

    pub(super) fn now(&self) -> SystemTime {
        self.system_time(Instant::now())
    }

    /// The wall-clock time of a stamp.
    pub(super) fn at(&self, at: Stamp) -> SystemTime {
        match at {
            Stamp::Now => self.now(),
            Stamp::At(i) => self.system_time(i),
            Stamp::Wall(t) => t,
        }
    }
}

/// When a transition happened, read only if someone is told.
#[derive(Clone, Copy, Debug)]
pub(super) enum Stamp {
    Now,
    At(Instant),
    Wall(SystemTime),
}

/// Who hears of the run's transitions.
pub(super) struct Transitions {
    flow: &'static str,
    flow_run: FlowRunId,
    /// For a subflow's run: the parent's task run.
    parent: Option<TaskRunId>,
    clock: Clock,
    task_handlers: Handlers,
    flow_handlers: Handlers,
    pub(super) publisher: Publisher,
    /// The flow run's own state.
    flow_state: State,
}

impl Transitions {
    pub(super) fn new(
        flow: &'static str,
        flow_run: FlowRunId,
        parent: Option<TaskRunId>,
        clock: Clock,
        task_handlers: Handlers,
        flow_handlers: Handlers,
        publisher: Publisher,
    ) -> Self {
        Transitions {
            flow,
            flow_run,
            parent,
            clock,
            task_handlers,
            flow_handlers,
            publisher,
            flow_state: State::Pending,
        }
    }

    /// Whether anyone hears of task run transitions (handlers or subscribers): backends
    /// then report when attempts start.
    #[inline]
    pub(super) fn observed(&self) -> bool {
        !self.task_handlers.is_empty() || self.publisher.is_active()
    }

    /// Task run `who` (named `name` in the flow) goes to `new` in `attempt`: written to
    /// `slot`, its state in the run record.
    #[inline]
    pub(super) fn task(
        &mut self,
        slot: &mut State,
        name: &Arc<str>,
        who: UpId,
        attempt: u32,
        new: State,
        at: Stamp,
    ) {
        log(&new, FullName(name, who.index), who);
        self.record(slot, name, who, attempt, new, at);
    }

    /// Attempt `attempt` of task run `who` failed (`failed`: `Failed` or `TimedOut`) at
    /// `at` and the next one starts after `wait`: `Running → failed → Retrying`, logged
    /// once, as a retry rather than a failure.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn retry(
        &mut self,
        slot: &mut State,
        name: &Arc<str>,
        who: UpId,
        attempt: u32,
        failed: State,
        wait: Duration,
        at: SystemTime,
    ) {
        tracing::info!(
            target: "tideflow",
            task = %FullName(name, who.index),
            task_node = who.node as u64,
            task_index = who.index,
            error = %failed.message().unwrap_or(""),
            "Retrying in {wait:?}"
        );
        self.record(slot, name, who, attempt, failed, Stamp::Wall(at));
        let retrying = State::Retrying {
            attempt: attempt + 1,
            at: at + wait,
        };
        self.record(slot, name, who, attempt, retrying, Stamp::Wall(at));
    }

    #[inline]
    fn record(&mut self, slot: &mut State, name: &Arc<str>, who: UpId, attempt: u32, new: State, at: Stamp) {
        if !self.observed() {
            *slot = new;
            return;
        }
        let old = std::mem::replace(slot, new);
        let at = self.clock.at(at);
        if !self.task_handlers.is_empty() {
            self.task_handlers.call(&StateChange {
                flow: self.flow,
                flow_run_id: self.flow_run,
                task: Some(FullName(name, who.index).to_string()),
                old: old.clone(),
                new: slot.clone(),
                at,
                failed_tasks: Vec::new(),
            });
        }
        if self.publisher.is_active() {
            self.publisher.publish(RunEvent {
                seq: 0,
                flow_run_id: self.flow_run,
                flow: self.flow.to_owned(),
                task_run_id: Some(TaskRunId {
                    flow_run: self.flow_run,
                    node: who.node as u32,
                    map_index: who.index,
                }),
                task: Some(Arc::clone(name)),
                map_index: who.index,
                attempt,
                old,
                new: slot.clone(),
                at,
                parent: None,
            });
        }
    }

    /// The flow run goes to `new`; `failed_tasks` names its failed task runs when it ends.
    pub(super) fn flow(&mut self, new: State, failed_tasks: Vec<String>) {
        match &new {
            State::Running => tracing::info!(target: "tideflow", "flow run started"),
            State::Failed { message } => {
                tracing::error!(target: "tideflow", error = %message, "flow run Failed")
            }
            State::Cancelled { message } => {
                tracing::warn!(target: "tideflow", reason = %message, "flow run Cancelled")
            }
            other => tracing::info!(target: "tideflow", "flow run {}", other.name()),
        }
        let old = std::mem::replace(&mut self.flow_state, new);
        if self.flow_handlers.is_empty() && !self.publisher.is_active() {
            return;
        }
        let at = SystemTime::now();
        if !self.flow_handlers.is_empty() {
            self.flow_handlers.call(&StateChange {
                flow: self.flow,
                flow_run_id: self.flow_run,
                task: None,
                old: old.clone(),
                new: self.flow_state.clone(),
                at,
                failed_tasks,
            });
        }
        if self.publisher.is_active() {
            self.publisher.publish(RunEvent {
                seq: 0,
                flow_run_id: self.flow_run,
                flow: self.flow.to_owned(),
                task_run_id: None,
                task: None,
                map_index: None,
                attempt: 0,
                old,
                new: self.flow_state.clone(),
                at,
                parent: self.parent,
            });
        }
    }
}

/// Logs a task run's new state. `Running` is logged by the backend, in the attempt's span
/// where the body starts, so that it comes before the body's own log lines. Each line
/// carries the task run's node and index (`task_node`, `task_index`), so that a
/// subscriber files it under the task run though it is logged in the flow run's span.
fn log(state: &State, task: FullName<'_>, who: UpId) {
    let (node, index) = (who.node as u64, who.index);
    match state {
        State::Running => {}
        State::Failed { message } => {
            tracing::error!(target: "tideflow", task = %task, task_node = node, task_index = index, error = %message, "Failed")
        }
        State::TimedOut { message } => {
            tracing::error!(target: "tideflow", task = %task, task_node = node, task_index = index, error = %message, "TimedOut")
        }
        State::TriggerFailed { message } => {
            tracing::warn!(target: "tideflow", task = %task, task_node = node, task_index = index, reason = %message, "TriggerFailed")
        }
        State::Skipped { message } => {
            tracing::info!(target: "tideflow", task = %task, task_node = node, task_index = index, reason = %message, "Skipped")
        }
        State::Cancelled { message } => {
            tracing::warn!(target: "tideflow", task = %task, task_node = node, task_index = index, reason = %message, "Cancelled")
        }
        State::Mapped { children } => {
            tracing::info!(target: "tideflow", task = %task, task_node = node, task_index = index, children = *children, "Mapped")
        }
        other => {
            tracing::info!(target: "tideflow", task = %task, task_node = node, task_index = index, "{}", other.name())
        }
    }
}
