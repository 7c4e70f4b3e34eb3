//! A flow ready to run: its graph, parameter values and run options.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;

use crate::context::{FlowRunId, TaskContext};
use crate::engine::{self, Control, RunOptions};
use crate::error::FlowError;
use crate::event::{Delivery, Subscription};
use crate::executor::Executor;
use crate::graph::Graph;
use crate::handle::RunHandle;
use crate::notify::StateHandler;
use crate::run::FlowRun;
use crate::schedule::{ScheduledRun, ServePolicy};
use crate::store::ResultStore;
use crate::task::{SubflowFuture, SubflowOutcome};
use crate::value::Value;

/// A flow with its parameter values, ready to run; `flow!` generates a function that
/// returns one. `O` is the flow's output type.
///
/// A `Flow` can be run any number of times; each run gets a new run id.
pub struct Flow<O> {
    graph: Arc<Graph>,
    params: Vec<Value>,
    options: RunOptions,
    serving: Arc<Serving>,
    _output: PhantomData<fn() -> O>,
}

/// What `serve` reads of a flow: its schedules and its policy.
#[derive(Clone, Debug, Default)]
struct Serving {
    schedules: Vec<ScheduledRun>,
    policy: ServePolicy,
}

impl<O> Clone for Flow<O> {
    fn clone(&self) -> Self {
        Flow {
            graph: Arc::clone(&self.graph),
            params: self.params.clone(),
            options: self.options.clone(),
            serving: Arc::clone(&self.serving),
            _output: PhantomData,
        }
    }
}

impl<O> fmt::Debug for Flow<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("name", &self.graph.name)
            .field("tasks", &self.graph.nodes.len())
            .finish_non_exhaustive()
    }
}

impl<O: Send + Sync + 'static> Flow<O> {
    /// Wraps a graph; parameters start at their defaults.
    pub fn from_graph(graph: Graph) -> Self {
        let params = graph
            .params
            .iter()
            .map(|p| {
                p.default
                    .clone()
                    .unwrap_or_else(|| crate::value::value(crate::graph::Unset))
            })
            .collect();
        Flow {
            graph: Arc::new(graph),
            params,
            options: RunOptions::default(),
            serving: Arc::default(),
            _output: PhantomData,
        }
    }

    /// The flow's name.
    pub fn name(&self) -> &'static str {
        self.graph.name
    }

    /// The flow's doc comment.
    pub fn description(&self) -> &'static str {
        self.graph.description
    }

    /// The flow's graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Sets a parameter by name. The value goes through serde, so `"x.csv"` sets a
    /// `String` parameter and `3` a `u64` one.
    ///
    /// # Errors
    /// [`FlowError::UnknownParam`] for a name the flow does not declare (the error lists
    /// the parameters), [`FlowError::InvalidParam`] for a value that does not fit the
    /// parameter's type.
    pub fn with_param(self, name: &str, value: impl Serialize) -> Result<Self, FlowError> {
        let json = serde_json::to_value(value).map_err(|e| self.invalid(name, e.to_string()))?;
        self.with_param_json(name, json)
    }

    /// Sets a parameter from a JSON value (as the CLI does for `--param k=v`).
    ///
    /// # Errors
    /// As [`Flow::with_param`].
    pub fn with_param_json(mut self, name: &str, json: serde_json::Value) -> Result<Self, FlowError> {
        let Some(index) = self.graph.params.iter().position(|p| p.name == name) else {
            return Err(FlowError::UnknownParam {
                flow: self.graph.name.to_owned(),
                name: name.to_owned(),
                known: self.param_list(),
            });
        };
        let value =
            (self.graph.params[index].from_json)(json).map_err(|reason| self.invalid(name, reason))?;
        self.params[index] = value;
        Ok(self)
    }

    /// The current value of every parameter, as JSON, in declaration order.
    pub fn params(&self) -> Vec<(&'static str, serde_json::Value)> {
        self.graph
            .params
            .iter()
            .zip(&self.params)
            .map(|(spec, v)| (spec.name, (spec.to_json)(v)))
            .collect()
    }

    /// Runs the flow on this executor ([`crate::LocalExecutor`] by default).
    pub fn executor(mut self, executor: impl Into<Executor>) -> Self {
        self.options.executor = executor.into();
        self
    }

    /// The tasks whose states decide the flow's state (by default, the terminal tasks:
    /// those nothing depends on).
    ///
    /// # Errors
    /// [`FlowError::UnknownTask`] for a name that is not a task of the flow.
    pub fn reference_tasks<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, FlowError> {
        let mut ids = Vec::new();
        for name in names {
            match self.graph.node_by_name(name) {
                Some(id) => ids.push(id),
                None => return Err(self.unknown_task(name)),
            }
        }
        self.options.reference = Some(ids);
        Ok(self)
    }

    /// Overrides the options of the task named `name` (its binding, else its task name)
    /// for this flow, as Prefect's `task.with_options(..)` does: e.g. a shorter
    /// `retry_delay` for a demo or a test, or more retries for a flaky source.
    ///
    /// ```text
    /// let flow = demo().with_task_options("fetch", |o| o.retry_delay = Duration::from_millis(10))?;
    /// ```
    ///
    /// # Errors
    /// [`FlowError::UnknownTask`] for a name that is not a task of the flow.
    pub fn with_task_options(
        mut self,
        name: &str,
        change: impl FnOnce(&mut crate::TaskOptions),
    ) -> Result<Self, FlowError> {
        let Some(id) = self.graph.node_by_name(name) else {
            return Err(self.unknown_task(name));
        };
        change(&mut Arc::make_mut(&mut self.graph).nodes[id.index()].options);
        Ok(self)
    }

    /// Keeps every task result in the run result (by default a result is released as soon
    /// as no task needs it, so memory stays bounded on large maps; terminal tasks' results
    /// and the output are always kept).
    pub fn keep_results(mut self) -> Self {
        self.options.keep_results = true;
        self
    }

    /// Calls `handler` on every state transition of every task run of this flow (mapped
    /// children included): see [`crate::notify`] for the transitions. A closure takes the
    /// change with its type written out: `flow.on_task_state(|c: &StateChange| ..)`.
    /// Handlers are called in the order they were added; one that errors or panics is
    /// logged and ignored.
    pub fn on_task_state(mut self, handler: impl StateHandler) -> Self {
        self.options.task_handlers.0.push(Arc::new(handler));
        self
    }

    /// Calls `handler` on every state transition of the flow run: `Pending -> Running` when
    /// it starts, `Running -> Success` or `Running -> Failed` when it ends (with the failed
    /// task runs in [`StateChange::failed_tasks`](crate::StateChange::failed_tasks)). A
    /// `SlackNotifier` (feature `slack`) is such a handler. One that errors or panics is
    /// logged and ignored.
    pub fn on_flow_state(mut self, handler: impl StateHandler) -> Self {
        self.options.flow_handlers.0.push(Arc::new(handler));
        self
    }

    /// Writes every task's successful result to the result store (as `#[task(persist)]`
    /// does for one task), so that a failed run can be restarted with [`Flow::restart`]
    /// without running again what succeeded. A task marked `persist = false`, or
    /// `#[task(local)]`, is not persisted.
    pub fn persist_results(mut self) -> Self {
        self.options.persist_all = true;
        self
    }

    /// Persists and caches results in `store` rather than in the default one
    /// ([`ResultStore::default_location`]).
    pub fn result_store(mut self, store: ResultStore) -> Self {
        self.options.store = Some(store);
        self
    }

    /// Runs earlier run `run` of this flow again, under the same run id and with the same
    /// parameter values: every task run whose result was persisted ends `Cached` with that
    /// result, without running; the others (those that failed, did not run, or whose
    /// result was not persisted) run. A stored result that cannot be read is reported in
    /// [`FlowRun::warnings`] and its task runs again. Results persisted by this run join
    /// the earlier ones, so a run can be restarted again.
    ///
    /// ```text
    /// let run = pipeline().persist_results().run().await;     // fails half way
    /// let again = pipeline().persist_results().restart(run.id()).await?;
    /// ```
    ///
    /// # Errors
    /// [`FlowError::RunNotFound`] when the result store holds no record of `run` (only runs
    /// of flows that persist results are recorded), [`FlowError::RunOfAnotherFlow`] for a
    /// run of another flow, [`FlowError::RunRecordUnreadable`] for a damaged record, and
    /// the errors of [`Flow::with_param_json`] when a recorded parameter no longer fits.
    pub async fn restart(&self, run: FlowRunId) -> Result<FlowRun<O>, FlowError> {
        let store = self.options.store.clone().unwrap_or_default();
        let manifest = store.read_run(self.graph.name, run)?;
        let mut flow = self.clone();
        for (name, value) in manifest.params {
            flow = flow.with_param_json(&name, value)?;
        }
        flow.options.restart = Some(run);
        Ok(flow.run().await)
    }

    /// Adds a schedule: `serve` runs the flow at each of its slots, with the schedule's
    /// parameter values (see [`crate::schedule`]). `#[schedule(..)]` on a flow in `flow!`
    /// declares them.
    #[must_use]
    pub fn schedule(mut self, run: ScheduledRun) -> Self {
        Arc::make_mut(&mut self.serving).schedules.push(run);
        self
    }

    /// Replaces the flow's schedules (`serve --schedule` does, for one `serve`).
    #[must_use]
    pub fn with_schedules(mut self, runs: Vec<ScheduledRun>) -> Self {
        Arc::make_mut(&mut self.serving).schedules = runs;
        self
    }

    /// The flow's schedules.
    pub fn schedules(&self) -> &[ScheduledRun] {
        &self.serving.schedules
    }

    /// Sets how `serve` runs the flow's scheduled runs: missed slots, concurrent runs
    /// (`#[serve(..)]` on a flow in `flow!`).
    #[must_use]
    pub fn serve_policy(mut self, policy: ServePolicy) -> Self {
        Arc::make_mut(&mut self.serving).policy = policy;
        self
    }

    /// How `serve` runs the flow's scheduled runs.
    pub fn policy(&self) -> ServePolicy {
        self.serving.policy
    }

    /// Runs under the id `id` instead of a new one: `serve` records a scheduled run in
    /// the run history before it starts it. Give each run its own id.
    #[must_use]
    pub fn with_run_id(mut self, id: FlowRunId) -> Self {
        self.options.run_id = Some(id);
        self
    }

    /// Runs the flow to completion and returns its run result.
    pub async fn run(&self) -> FlowRun<O> {
        let id = self.options.restart.or(self.options.run_id).unwrap_or_default();
        let record = engine::execute(
            Arc::clone(&self.graph),
            self.params.clone(),
            self.options.clone(),
            id,
            None,
        )
        .await;
        FlowRun::new(record)
    }

    /// Starts the flow in the background on tokio and returns its handle at once: the
    /// run's id, [`RunHandle::cancel`], [`RunHandle::subscribe`], and, awaited, the run's
    /// result as [`Flow::run`] gives it. The run logs to the `tracing` subscriber current
    /// here.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(&self) -> RunHandle<O> {
        use tracing::instrument::WithSubscriber as _;
        let id = self.options.restart.or(self.options.run_id).unwrap_or_default();
        let (control, rx) = tokio::sync::mpsc::unbounded_channel::<Control>();
        let run = engine::execute(
            Arc::clone(&self.graph),
            self.params.clone(),
            self.options.clone(),
            id,
            Some(rx),
        );
        let join = tokio::spawn(run.with_current_subscriber());
        RunHandle::new(id, control, join)
    }

    /// Subscribes to the events of every run of this flow value (and of its clones made
    /// after this call), from each run's first event: see [`crate::event`]. The
    /// subscription ends once this flow value, its clones and their runs are gone.
    pub fn subscribe(&mut self, delivery: Delivery) -> Subscription {
        let (subscriber, subscription) = Subscription::new(delivery);
        self.options.subscribers.push(subscriber);
        subscription
    }

    /// Runs this flow as a task of another flow (what `flow!` generates for a flow called
    /// inside another one): `inputs` are its parameter values, in order. The task succeeds
    /// with the flow's output, or fails naming the subflow's failed task runs; either way
    /// the subflow's run is kept in the parent's run result ([`crate::TaskRun::subflow`]).
    /// The subflow runs on the parent's executor and result store (unless it sets its own),
    /// and persists its results when the parent persists all of its own.
    #[doc(hidden)]
    pub fn run_as_subflow(mut self, inputs: Vec<Value>, ctx: TaskContext) -> SubflowFuture {
        Box::pin(async move {
            let expected = self.graph.params.len();
            if inputs.len() != expected {
                let message = format!(
                    "subflow `{}` takes {expected} parameter(s), but was given {}",
                    self.graph.name,
                    inputs.len()
                );
                return SubflowOutcome {
                    result: Err(crate::TaskError::fail(message)),
                    run: None,
                };
            }
            self.options.parent = Some(ctx.task_run_id());
            if let Some(parent) = engine::inherited() {
                self.options.executor = parent.executor.clone();
                if self.options.store.is_none() {
                    self.options.store = parent.store.clone();
                }
                self.options.persist_all |= parent.persist_all;
                self.options
                    .subscribers
                    .extend(parent.subscribers.iter().cloned());
            }
            let id = FlowRunId::new();
            let run =
                Arc::new(engine::execute(Arc::clone(&self.graph), inputs, self.options, id, None).await);
            let result = if run.state.is_successful() {
                Ok(run.output.clone().unwrap_or_else(|| crate::value::value(())))
            } else {
                Err(crate::TaskError::fail(format!(
                    "subflow `{}` (run {}) failed: {}",
                    self.graph.name,
                    run.id,
                    run.state.message().unwrap_or("its output was not produced")
                )))
            };
            SubflowOutcome {
                result,
                run: Some(run),
            }
        })
    }

    /// The graph in Graphviz DOT (mapped tasks marked).
    pub fn to_dot(&self) -> String {
        crate::render::to_dot(&self.graph)
    }

    /// The graph as a Mermaid flowchart (mapped tasks marked).
    pub fn to_mermaid(&self) -> String {
        crate::render::to_mermaid(&self.graph)
    }

    fn invalid(&self, name: &str, reason: String) -> FlowError {
        let expected = self
            .graph
            .params
            .iter()
            .find(|p| p.name == name)
            .map_or("?", |p| p.ty);
        FlowError::InvalidParam {
            flow: self.graph.name.to_owned(),
            name: name.to_owned(),
            expected: expected.to_owned(),
            reason,
        }
    }

    fn unknown_task(&self, name: &str) -> FlowError {
        FlowError::UnknownTask {
            flow: self.graph.name.to_owned(),
            name: name.to_owned(),
            known: self
                .graph
                .nodes
                .iter()
                .map(|n| format!("`{}`", n.name))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn param_list(&self) -> String {
        if self.graph.params.is_empty() {
            return "(none)".to_owned();
        }
        self.graph
            .params
            .iter()
            .map(|p| format!("`{}: {}`", p.name, p.ty))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
