//! Flows by name: every `flow!` registers its flow, as `#[task]` registers its task, so a
//! program's CLI can list them, draw them and run them by name with parameters it has
//! parsed, without knowing their output types.

use std::fmt::{self, Debug, Display};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::FlowError;
use crate::event::{Delivery, Subscription};
use crate::executor::Executor;
use crate::flow::Flow;
use crate::graph::Graph;
use crate::handle::RunHandle;
use crate::notify::{HandlerResult, StateChange, StateHandler};
use crate::run::{FlowRun, TaskRun};
use crate::schedule::{ScheduledRun, ServePolicy};
use crate::state::State;
use crate::value::Value;
use crate::FlowRunId;

/// A registration `flow!` submits to [`inventory`]: the flow's name, where it is declared,
/// and how to build it.
pub struct FlowRegistration {
    /// The flow's name (its function's).
    pub name: &'static str,
    /// The module that declares it (`module_path!()`).
    pub module: &'static str,
    /// The flow's output type, as written.
    pub output: &'static str,
    /// Builds the flow with its default parameters.
    pub build: fn() -> DynFlow,
}

impl Debug for FlowRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowRegistration")
            .field("name", &self.name)
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

inventory::collect!(FlowRegistration);

/// Every flow linked into this program, sorted by name (then module).
pub fn registered_flows() -> Vec<&'static FlowRegistration> {
    let mut all: Vec<&'static FlowRegistration> = inventory::iter::<FlowRegistration>.into_iter().collect();
    all.sort_by(|a, b| (a.name, a.module).cmp(&(b.name, b.module)));
    all.dedup_by(|a, b| a.name == b.name && a.module == b.module);
    all
}

/// How a flow's output is shown without its type: `flow!` picks, per output type, its
/// `Display` (else its `Debug`) for people and its `Serialize` for machines.
#[derive(Clone, Copy)]
pub struct OutputView {
    /// The output as text, if the type can be shown.
    pub text: fn(&Value) -> Option<String>,
    /// The output as JSON, if the type is `Serialize`.
    pub json: fn(&Value) -> Option<serde_json::Value>,
}

impl OutputView {
    /// For a flow without output.
    pub const NONE: OutputView = OutputView {
        text: |_| None,
        json: |_| None,
    };
}

/// Picks a way to show a value by autoref specialization: `text()` is its
/// `Display`, else its `Debug`, else nothing; `json()` its `Serialize`, else
/// nothing. Generated code calls these with a concrete type, as `(&&&Show(v)).text()` and
/// `(&&Show(v)).json()` (each method takes `&self`, one reference more).
pub struct Show<'a, T>(pub &'a T);

/// `Show` through `Display`.
pub trait ShowDisplay {
    /// The value as text.
    fn text(&self) -> Option<String>;
}
impl<T: Display> ShowDisplay for &&Show<'_, T> {
    fn text(&self) -> Option<String> {
        Some(self.0.to_string())
    }
}

/// `Show` through `Debug`.
pub trait ShowDebug {
    /// The value as text.
    fn text(&self) -> Option<String>;
}
impl<T: Debug> ShowDebug for &Show<'_, T> {
    fn text(&self) -> Option<String> {
        Some(format!("{:#?}", self.0))
    }
}

/// `Show` through `Serialize`.
pub trait ShowJson {
    /// The value as JSON.
    fn json(&self) -> Option<serde_json::Value>;
}
impl<T: serde::Serialize> ShowJson for &Show<'_, T> {
    fn json(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.0).ok()
    }
}

/// `Show` of a value that has no way to be shown.
pub trait ShowNothing {
    /// Nothing.
    fn text(&self) -> Option<String> {
        None
    }
    /// Nothing.
    fn json(&self) -> Option<serde_json::Value> {
        None
    }
}
impl<T> ShowNothing for Show<'_, T> {}

/// A handler behind an `Arc`, as a handler.
struct Shared(Arc<dyn StateHandler>);

impl StateHandler for Shared {
    fn on_change(&self, change: &StateChange) -> HandlerResult {
        self.0.on_change(change)
    }
}

type BoxRun = Pin<Box<dyn Future<Output = DynFlowRun> + Send>>;
type BoxRestart = Pin<Box<dyn Future<Output = Result<DynFlowRun, FlowError>> + Send>>;

/// What [`DynFlow`] needs of a `Flow<O>`, for any `O`.
trait AnyFlow: Send + Sync {
    fn clone_box(&self) -> Box<dyn AnyFlow>;
    fn graph(&self) -> &Graph;
    fn params(&self) -> Vec<(&'static str, serde_json::Value)>;
    fn with_param_json(&self, name: &str, json: serde_json::Value) -> Result<Box<dyn AnyFlow>, FlowError>;
    fn with_executor(&self, executor: Executor) -> Box<dyn AnyFlow>;
    fn subscribe(&mut self, delivery: Delivery) -> Subscription;
    fn on_flow_state(&self, handler: Arc<dyn StateHandler>) -> Box<dyn AnyFlow>;
    fn run(&self, view: OutputView) -> BoxRun;
    fn restart(&self, run: FlowRunId, view: OutputView) -> BoxRestart;
    fn start(&self) -> RunHandle<Opaque>;
    fn schedules(&self) -> &[ScheduledRun];
    fn policy(&self) -> ServePolicy;
    fn with_schedules(&self, runs: Vec<ScheduledRun>) -> Box<dyn AnyFlow>;
    fn with_run_id(&self, id: FlowRunId) -> Box<dyn AnyFlow>;
}

impl<O: Send + Sync + 'static> AnyFlow for Flow<O> {
    fn clone_box(&self) -> Box<dyn AnyFlow> {
        Box::new(self.clone())
    }

    fn graph(&self) -> &Graph {
        Flow::graph(self)
    }

    fn params(&self) -> Vec<(&'static str, serde_json::Value)> {
        Flow::params(self)
    }

    fn with_param_json(&self, name: &str, json: serde_json::Value) -> Result<Box<dyn AnyFlow>, FlowError> {
        Ok(Box::new(self.clone().with_param_json(name, json)?))
    }

    fn with_executor(&self, executor: Executor) -> Box<dyn AnyFlow> {
        Box::new(self.clone().executor(executor))
    }

    fn subscribe(&mut self, delivery: Delivery) -> Subscription {
        Flow::subscribe(self, delivery)
    }

    fn on_flow_state(&self, handler: Arc<dyn StateHandler>) -> Box<dyn AnyFlow> {
        Box::new(self.clone().on_flow_state(Shared(handler)))
    }

    fn run(&self, view: OutputView) -> BoxRun {
        let flow = self.clone();
        Box::pin(async move {
            DynFlowRun {
                run: flow.run().await.retype(),
                view,
            }
        })
    }

    fn start(&self) -> RunHandle<Opaque> {
        Flow::start(self).retype()
    }

    fn schedules(&self) -> &[ScheduledRun] {
        Flow::schedules(self)
    }

    fn policy(&self) -> ServePolicy {
        Flow::policy(self)
    }

    fn with_schedules(&self, runs: Vec<ScheduledRun>) -> Box<dyn AnyFlow> {
        Box::new(self.clone().with_schedules(runs))
    }

    fn with_run_id(&self, id: FlowRunId) -> Box<dyn AnyFlow> {
        Box::new(self.clone().with_run_id(id))
    }

    fn restart(&self, run: FlowRunId, view: OutputView) -> BoxRestart {
        let flow = self.clone();
        Box::pin(async move {
            Ok(DynFlowRun {
                run: flow.restart(run).await?.retype(),
                view,
            })
        })
    }
}

/// A flow whose output type is not known here (the CLI's view of a registered flow):
/// its graph, its parameters, and a run whose output is shown as text or JSON.
pub struct DynFlow {
    flow: Box<dyn AnyFlow>,
    view: OutputView,
}

impl Clone for DynFlow {
    fn clone(&self) -> Self {
        DynFlow {
            flow: self.flow.clone_box(),
            view: self.view,
        }
    }
}

impl Debug for DynFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynFlow")
            .field("name", &self.flow.graph().name)
            .finish_non_exhaustive()
    }
}

impl DynFlow {
    /// Wraps a flow; `view` shows its output.
    pub fn new<O: Send + Sync + 'static>(flow: Flow<O>, view: OutputView) -> Self {
        DynFlow {
            flow: Box::new(flow),
            view,
        }
    }

    /// The flow's name.
    pub fn name(&self) -> &'static str {
        self.flow.graph().name
    }

    /// The flow's doc comment.
    pub fn description(&self) -> &'static str {
        self.flow.graph().description
    }

    /// The flow's graph.
    pub fn graph(&self) -> &Graph {
        self.flow.graph()
    }

    /// The current value of every parameter, as JSON, in declaration order.
    pub fn params(&self) -> Vec<(&'static str, serde_json::Value)> {
        self.flow.params()
    }

    /// The graph in Graphviz DOT (see [`Flow::to_dot`]).
    pub fn to_dot(&self) -> String {
        crate::render::to_dot(self.graph())
    }

    /// The graph as a Mermaid flowchart (see [`Flow::to_mermaid`]).
    pub fn to_mermaid(&self) -> String {
        crate::render::to_mermaid(self.graph())
    }

    /// Sets a parameter from a JSON value.
    ///
    /// # Errors
    /// As [`Flow::with_param_json`].
    pub fn with_param_json(self, name: &str, json: serde_json::Value) -> Result<Self, FlowError> {
        Ok(DynFlow {
            flow: self.flow.with_param_json(name, json)?,
            view: self.view,
        })
    }

    /// Sets a parameter from text as a person types it: as JSON (`3`, `true`, `[1, 2]`,
    /// `"text"`), or else, or when the JSON does not fit the parameter's type, as a bare
    /// string (so `path=trips.csv` sets a `String`). The command line's `--param` and the
    /// dashboard's form read values this way.
    ///
    /// # Errors
    /// [`FlowError::UnknownParam`]; for a value that fits neither way, the JSON reading's
    /// error when the text is JSON (`-1` for a `u64` says more than the string reading).
    pub fn with_param_text(self, name: &str, raw: &str) -> Result<Self, FlowError> {
        let as_json = match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(json) => match self.clone().with_param_json(name, json) {
                Ok(set) => return Ok(set),
                Err(e @ FlowError::UnknownParam { .. }) => return Err(e),
                Err(e) => Some(e),
            },
            Err(_) => None,
        };
        match self.with_param_json(name, serde_json::Value::String(raw.to_owned())) {
            Ok(set) => Ok(set),
            Err(e) => Err(as_json.unwrap_or(e)),
        }
    }

    /// Runs the flow on this executor.
    #[must_use]
    pub fn executor(self, executor: impl Into<Executor>) -> Self {
        DynFlow {
            flow: self.flow.with_executor(executor.into()),
            view: self.view,
        }
    }

    /// Calls `handler` on every state change of the flow run (see
    /// [`Flow::on_flow_state`]).
    #[must_use]
    pub fn on_flow_state(self, handler: impl StateHandler) -> Self {
        DynFlow {
            flow: self.flow.on_flow_state(Arc::new(handler)),
            view: self.view,
        }
    }

    /// Subscribes to the events of this flow's runs (see [`Flow::subscribe`]).
    pub fn subscribe(&mut self, delivery: Delivery) -> Subscription {
        self.flow.subscribe(delivery)
    }

    /// The flow's schedules (see [`Flow::schedules`]).
    pub fn schedules(&self) -> &[ScheduledRun] {
        self.flow.schedules()
    }

    /// How `serve` runs the flow's scheduled runs (see [`Flow::policy`]).
    pub fn policy(&self) -> ServePolicy {
        self.flow.policy()
    }

    /// Replaces the flow's schedules (see [`Flow::with_schedules`]).
    #[must_use]
    pub fn with_schedules(self, runs: Vec<ScheduledRun>) -> Self {
        DynFlow {
            flow: self.flow.with_schedules(runs),
            view: self.view,
        }
    }

    /// Runs under the id `id` (see [`Flow::with_run_id`]).
    #[must_use]
    pub fn with_run_id(self, id: FlowRunId) -> Self {
        DynFlow {
            flow: self.flow.with_run_id(id),
            view: self.view,
        }
    }

    /// Starts the flow in the background on tokio (see [`Flow::start`]).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(&self) -> DynRunHandle {
        DynRunHandle {
            handle: self.flow.start(),
            view: self.view,
        }
    }

    /// Runs the flow to its end.
    pub async fn run(&self) -> DynFlowRun {
        self.flow.run(self.view).await
    }

    /// Runs the run `run` again under its id, from its persisted results (see
    /// [`Flow::restart`]).
    ///
    /// # Errors
    /// As [`Flow::restart`].
    pub async fn restart(&self, run: FlowRunId) -> Result<DynFlowRun, FlowError> {
        self.flow.restart(run, self.view).await
    }
}

impl<O: Send + Sync + 'static> From<Flow<O>> for DynFlow {
    /// The flow, its output not shown (`flow!`'s registration shows it).
    fn from(flow: Flow<O>) -> Self {
        DynFlow::new(flow, OutputView::NONE)
    }
}

/// A run of a [`DynFlow`] started in the background: await it for its [`DynFlowRun`]
/// (see [`RunHandle`]).
pub struct DynRunHandle {
    handle: RunHandle<Opaque>,
    view: OutputView,
}

impl Debug for DynRunHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynRunHandle")
            .field("id", &self.handle.id())
            .finish_non_exhaustive()
    }
}

impl DynRunHandle {
    /// The run's id.
    pub fn id(&self) -> FlowRunId {
        self.handle.id()
    }

    /// Stops the run (see [`RunHandle::cancel`]).
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// A handle that stops the run, kept apart from the one awaited.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.handle.control())
    }

    /// Waits for the run's end.
    pub async fn finish(self) -> DynFlowRun {
        DynFlowRun {
            run: self.handle.await,
            view: self.view,
        }
    }
}

/// Stops a run started in the background, apart from its handle ([`DynRunHandle::canceller`]).
#[derive(Clone, Debug)]
pub struct Canceller(tokio::sync::mpsc::UnboundedSender<crate::engine::Control>);

impl Canceller {
    /// Stops the run (see [`RunHandle::cancel`]).
    pub fn cancel(&self) {
        let _ = self.0.send(crate::engine::Control::Cancel);
    }
}

/// The finished run of a [`DynFlow`].
pub struct DynFlowRun {
    run: FlowRun<Opaque>,
    view: OutputView,
}

/// The output type of a [`DynFlowRun`]'s inner run: never downcast to.
struct Opaque;

impl Debug for DynFlowRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynFlowRun")
            .field("id", &self.run.id())
            .field("state", self.run.state())
            .finish_non_exhaustive()
    }
}

impl DynFlowRun {
    /// The run's id.
    pub fn id(&self) -> FlowRunId {
        self.run.id()
    }

    /// The flow's name.
    pub fn flow_name(&self) -> &'static str {
        self.run.flow_name()
    }

    /// The run's final state.
    pub fn state(&self) -> &State {
        self.run.state()
    }

    /// Every task run, in declaration order.
    pub fn tasks(&self) -> &[TaskRun] {
        self.run.tasks()
    }

    /// The summary table (see [`FlowRun::summary`]).
    pub fn summary(&self) -> String {
        self.run.summary()
    }

    /// Every failed task run (`clean[3]`) with its state (see [`FlowRun::failed_tasks`]).
    pub fn failed_tasks(&self) -> Vec<(String, String)> {
        self.run.failed_tasks()
    }

    /// What went wrong around the run without failing a task (see [`FlowRun::warnings`]).
    pub fn warnings(&self) -> &[String] {
        self.run.warnings()
    }

    /// Why the run failed, naming its failed tasks; `None` when it succeeded.
    pub fn error(&self) -> Option<FlowError> {
        if self.run.state().is_successful() {
            return None;
        }
        Some(FlowError::Failed {
            flow: self.run.flow_name().to_owned(),
            failed: self.run.failed_tasks(),
        })
    }

    /// The output as text (its `Display`, else its `Debug`), when the run succeeded with
    /// an output that can be shown.
    pub fn output_text(&self) -> Option<String> {
        self.run.output_value().and_then(self.view.text)
    }

    /// The output as JSON, when the run succeeded with a `Serialize` output.
    pub fn output_json(&self) -> Option<serde_json::Value> {
        self.run.output_value().and_then(self.view.json)
    }
}
