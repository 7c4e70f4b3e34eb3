//! The result of a flow run: a plain, typed value to assert on.

use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::context::{FlowRunId, TaskRunId};
use crate::error::FlowError;
use crate::state::State;
use crate::value::{Data, Value};

/// What the engine records of one flow run; read it through [`FlowRun`].
#[derive(Debug)]
pub struct RunRecord {
    pub(crate) id: FlowRunId,
    /// For a subflow: the task run of the parent flow that ran it.
    pub(crate) parent: Option<TaskRunId>,
    pub(crate) flow: &'static str,
    pub(crate) state: State,
    pub(crate) tasks: Vec<TaskRun>,
    pub(crate) output: Option<Value>,
    pub(crate) started_at: SystemTime,
    pub(crate) ended_at: SystemTime,
    /// Results that could not be read from or written to the result store.
    pub(crate) warnings: Vec<String>,
    /// Finished attempts a cluster ran again (their results lost with a worker).
    pub(crate) recomputed: u32,
}

/// One task as it ended: a task run, or a mapped task with its children.
#[derive(Clone)]
pub struct TaskRun {
    pub(crate) name: Arc<str>,
    pub(crate) task_name: &'static str,
    pub(crate) state: State,
    pub(crate) attempts: u32,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) ended_at: Option<SystemTime>,
    pub(crate) result: Option<Data>,
    pub(crate) children: Vec<ChildRun>,
    /// The flow runs of a subflow task, by map index (`None` for a non-mapped task).
    pub(crate) subflows: Vec<(Option<u32>, Arc<RunRecord>)>,
}

impl TaskRun {
    /// The task's name in the flow (its binding, or the task name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The task's own name (`#[task(name = ..)]`, or its function's name).
    pub fn task_name(&self) -> &'static str {
        self.task_name
    }

    /// The final state (`Mapped` for a mapped task: see [`TaskRun::children`]).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// How many times the body was started (0 when it never ran, and for a mapped task,
    /// whose children count their own).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// When the first attempt started (for a mapped task: when it spawned its children).
    pub fn started_at(&self) -> Option<SystemTime> {
        self.started_at
    }

    /// When the run reached its final state.
    pub fn ended_at(&self) -> Option<SystemTime> {
        self.ended_at
    }

    /// From the start to the final state.
    pub fn duration(&self) -> Option<Duration> {
        span(self.started_at, self.ended_at)
    }

    /// The children of a mapped task, in map order (empty otherwise).
    pub fn children(&self) -> &[ChildRun] {
        &self.children
    }

    /// `clean[3]`: how logs and failure messages name child `index` of this task.
    pub fn child_name(&self, index: usize) -> String {
        format!("{}[{index}]", self.name)
    }

    /// The result, if the task succeeded and the result was kept (terminal tasks always;
    /// others with [`crate::Flow::keep_results`]). `None` also when `T` is not the
    /// task's output type.
    pub fn result<T: 'static>(&self) -> Option<&T> {
        self.result.as_ref()?.local_ref()?.downcast_ref::<T>()
    }

    /// The flow run of a subflow task (a flow called as a task of this flow), with its own
    /// task runs and states; `None` for a task that is not a subflow or did not run. `O`
    /// is the subflow's output type ([`FlowRun::output`] errs for another type).
    /// For a mapped subflow, see [`TaskRun::child_subflow`].
    pub fn subflow<O: 'static>(&self) -> Option<FlowRun<O>> {
        self.subflow_at(None)
    }

    /// The flow run of child `index` of a mapped subflow task.
    pub fn child_subflow<O: 'static>(&self, index: usize) -> Option<FlowRun<O>> {
        self.subflow_at(u32::try_from(index).ok())
    }

    fn subflow_at<O: 'static>(&self, index: Option<u32>) -> Option<FlowRun<O>> {
        self.subflows
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, r)| FlowRun::from_shared(Arc::clone(r)))
    }

    /// Failed, or (for a mapped task) any child failed.
    pub fn is_failed(&self) -> bool {
        self.state.is_failed() || self.children.iter().any(ChildRun::is_failed)
    }

    pub(crate) fn failures(&self, out: &mut Vec<(String, String)>) {
        if self.state.is_failed() {
            out.push((self.name.to_string(), self.state.to_string()));
        }
        for c in self.children.iter().filter(|c| c.is_failed()) {
            out.push((self.child_name(c.map_index()), c.state.to_string()));
        }
    }
}

impl fmt::Debug for TaskRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskRun")
            .field("name", &self.name)
            .field("state", &self.state)
            .field("attempts", &self.attempts)
            .field("children", &self.children.len())
            .finish()
    }
}

/// One child of a mapped task as it ended (the engine's own record of it, kept compact:
/// a map can have millions).
#[derive(Clone)]
pub struct ChildRun {
    pub(crate) state: State,
    pub(crate) attempts: u32,
    pub(crate) index: u32,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) ended_at: Option<SystemTime>,
    pub(crate) result: Option<Data>,
    /// Engine bookkeeping: reads of `result` still to come.
    pub(crate) uses: u32,
    /// Engine bookkeeping: zipped upstream children not final yet.
    pub(crate) zip_wait: u32,
}

impl ChildRun {
    /// The child's index in its map.
    pub fn map_index(&self) -> usize {
        self.index as usize
    }

    /// The final state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// How many times the body was started (0 when it never ran).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// When the first attempt started.
    pub fn started_at(&self) -> Option<SystemTime> {
        self.started_at
    }

    /// When the child reached its final state.
    pub fn ended_at(&self) -> Option<SystemTime> {
        self.ended_at
    }

    /// From the first attempt's start to the final state.
    pub fn duration(&self) -> Option<Duration> {
        span(self.started_at, self.ended_at)
    }

    /// The result, if the child succeeded and the result was kept (see
    /// [`TaskRun::result`]).
    pub fn result<T: 'static>(&self) -> Option<&T> {
        self.result.as_ref()?.local_ref()?.downcast_ref::<T>()
    }

    /// `Failed` or `TriggerFailed`.
    pub fn is_failed(&self) -> bool {
        self.state.is_failed()
    }
}

impl fmt::Debug for ChildRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildRun")
            .field("map_index", &self.index)
            .field("state", &self.state)
            .field("attempts", &self.attempts)
            .finish()
    }
}

fn span(start: Option<SystemTime>, end: Option<SystemTime>) -> Option<Duration> {
    end?.duration_since(start?).ok()
}

/// The result of a flow run: its final state, every task run, and the typed output.
pub struct FlowRun<O> {
    record: Arc<RunRecord>,
    _output: PhantomData<fn() -> O>,
}

impl<O> fmt::Debug for FlowRun<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowRun")
            .field("id", &self.record.id)
            .field("flow", &self.record.flow)
            .field("state", &self.record.state)
            .field("tasks", &self.record.tasks)
            .finish()
    }
}

impl<O: 'static> FlowRun<O> {
    pub(crate) fn new(record: RunRecord) -> Self {
        Self::from_shared(Arc::new(record))
    }

    pub(crate) fn from_shared(record: Arc<RunRecord>) -> Self {
        FlowRun {
            record,
            _output: PhantomData,
        }
    }

    /// The same run, seen with another output type (for a run whose output type is not
    /// known where it is read: `registry::DynFlowRun`).
    pub(crate) fn retype<P: 'static>(self) -> FlowRun<P> {
        FlowRun::from_shared(self.record)
    }

    /// The output as it was returned, when the run succeeded.
    pub(crate) fn output_value(&self) -> Option<&Value> {
        if self.record.state.is_successful() {
            self.record.output.as_ref()
        } else {
            None
        }
    }

    /// For a subflow's run: the task run of the parent flow that ran it.
    pub fn parent_task_run(&self) -> Option<TaskRunId> {
        self.record.parent
    }

    /// The run's id.
    pub fn id(&self) -> FlowRunId {
        self.record.id
    }

    /// The flow's name.
    pub fn flow_name(&self) -> &'static str {
        self.record.flow
    }

    /// `Success` or `Failed`, decided by the reference tasks.
    pub fn state(&self) -> &State {
        &self.record.state
    }

    /// Every task run, in declaration order.
    pub fn tasks(&self) -> &[TaskRun] {
        &self.record.tasks
    }

    /// The task run named `name` (its binding, else its task name), if there is one.
    pub fn try_task(&self, name: &str) -> Option<&TaskRun> {
        self.record.tasks.iter().find(|t| &*t.name == name)
    }

    /// The task run named `name` (its binding, else its task name).
    ///
    /// # Panics
    /// When the flow has no such task; the message lists the names it has. Use
    /// [`FlowRun::try_task`] where the name is not known to be right.
    pub fn task(&self, name: &str) -> &TaskRun {
        match self.try_task(name) {
            Some(t) => t,
            None => panic!(
                "flow `{}` has no task named `{name}`; its tasks are: {}",
                self.record.flow,
                self.record
                    .tasks
                    .iter()
                    .map(|t| format!("`{}`", t.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Every failed task run (`clean[3]`) with its state.
    pub fn failed_tasks(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for t in &self.record.tasks {
            t.failures(&mut out);
        }
        out
    }

    /// The flow's output when it succeeded.
    ///
    /// # Errors
    /// [`FlowError::Failed`] naming the failed tasks when the flow failed.
    pub fn output(&self) -> Result<&O, FlowError> {
        if self.record.state.is_successful() {
            if let Some(v) = self.record.output.as_ref().and_then(|v| v.downcast_ref::<O>()) {
                return Ok(v);
            }
        }
        Err(FlowError::Failed {
            flow: self.record.flow.to_owned(),
            failed: self.failed_tasks(),
        })
    }

    /// The flow's output, moved out of the run.
    ///
    /// # Errors
    /// As [`FlowRun::output`].
    pub fn into_output(self) -> Result<O, FlowError>
    where
        O: Clone + Send + Sync,
    {
        self.output()?;
        let failed = FlowError::Failed {
            flow: self.record.flow.to_owned(),
            failed: Vec::new(),
        };
        let value = self.record.output.clone().ok_or_else(|| failed.clone())?;
        drop(self.record);
        match value.downcast::<O>() {
            Ok(arc) => Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone())),
            Err(_) => Err(failed),
        }
    }

    /// What went wrong around the run without failing a task: a stored result that could
    /// not be read (its task ran again) or written (a restart will run it again), each
    /// naming the task run and the file.
    pub fn warnings(&self) -> &[String] {
        &self.record.warnings
    }

    /// How many finished task runs a cluster ran again because their results were lost
    /// with a worker while tasks downstream still needed them (0 on a local executor).
    /// Results already read by every task that needs them are released on the cluster
    /// and never computed again.
    pub fn recomputed(&self) -> u32 {
        self.record.recomputed
    }

    /// When the run started and ended.
    pub fn duration(&self) -> Duration {
        self.record
            .ended_at
            .duration_since(self.record.started_at)
            .unwrap_or_default()
    }

    /// A table of the run: one row per task, with its state, attempts and duration, and
    /// for mapped tasks the count of children in each state.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "flow `{}` run {}: {} in {:.3}s",
            self.record.flow,
            self.record.id,
            self.record.state,
            self.duration().as_secs_f64()
        );
        let width = self
            .record
            .tasks
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "  {:width$}  {:<14} {:>8} {:>10}",
            "task", "state", "attempts", "seconds"
        );
        for t in &self.record.tasks {
            let secs = t
                .duration()
                .map_or("-".to_owned(), |d| format!("{:.3}", d.as_secs_f64()));
            let _ = writeln!(
                out,
                "  {:width$}  {:<14} {:>8} {:>10}",
                t.name,
                t.state.name(),
                t.attempts,
                secs
            );
            if !t.children.is_empty() {
                let mut counts: Vec<(&'static str, usize)> = Vec::new();
                for c in &t.children {
                    match counts.iter_mut().find(|(n, _)| *n == c.state.name()) {
                        Some((_, k)) => *k += 1,
                        None => counts.push((c.state.name(), 1)),
                    }
                }
                let retried = t.children.iter().filter(|c| c.attempts > 1).count();
                let parts: Vec<String> = counts.iter().map(|(n, k)| format!("{k} {n}")).collect();
                let _ = writeln!(
                    out,
                    "  {:width$}    children: {}; {retried} retried",
                    "",
                    parts.join(", ")
                );
            }
        }
        for (task, state) in self.failed_tasks() {
            let _ = writeln!(out, "  failed: {task}: {state}");
        }
        for warning in &self.record.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
        out
    }
}
