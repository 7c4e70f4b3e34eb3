//! The engine: a scheduler that decides, backends that run attempts, and one transition
//! point that records every state change.
//!
//! ```text
//! Graph ──plan──▶ Scheduler ──Attempt──▶ Backend (Local | Sequential)
//!                     ▲                        │
//!                     └────────Report──────────┘
//!                     │
//!                     └─ transition() ─▶ run record, state handlers, event subscribers
//! ```
//!
//! - [`plan`]: what the scheduler works out from the graph before it runs anything.
//! - [`scheduler`]: progress through the graph (readiness, map expansion, triggers, skips,
//!   retries and their delays, timeouts' decisions, cache lookups, tag limits). It emits
//!   [`backend::Attempt`]s and reads back [`backend::Report`]s.
//! - [`backend`]: runs attempts and reports how they ended, nothing else: it does not know
//!   what a retry, a trigger or a cache is.
//! - [`transition`]: the one function through which every state changes.
//! - [`wire`]: the form of an attempt and of its outcome that can cross a process.

pub(crate) mod backend;
mod plan;
mod scheduler;
mod store_work;
#[cfg(test)]
mod tests;
mod transition;
pub mod wire;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::context::{FlowRunId, TaskRunId};
use crate::event::Subscriber;
use crate::executor::Executor;
use crate::graph::{Graph, NodeId};
use crate::notify::Handlers;
use crate::run::RunRecord;
use crate::store::ResultStore;
use crate::value::Value;

/// How a flow runs: what [`crate::Flow`]'s builder methods set.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunOptions {
    pub(crate) executor: Executor,
    pub(crate) reference: Option<Vec<NodeId>>,
    pub(crate) keep_results: bool,
    pub(crate) task_handlers: Handlers,
    pub(crate) flow_handlers: Handlers,
    /// Where results are persisted and cached (`None`: the default store).
    pub(crate) store: Option<ResultStore>,
    /// Persist every task's result (`Flow::persist_results`).
    pub(crate) persist_all: bool,
    /// Run again as this earlier run, reusing its persisted results (`Flow::restart`).
    pub(crate) restart: Option<FlowRunId>,
    /// Run under this id instead of a new one (`Flow::with_run_id`).
    pub(crate) run_id: Option<FlowRunId>,
    /// For a subflow: the parent's task run that runs it.
    pub(crate) parent: Option<TaskRunId>,
    /// Subscribers of every run's events.
    pub(crate) subscribers: Vec<Subscriber>,
}

/// What a subflow's run takes from its parent's: the executor, the result store, the
/// switch that persists every result, and the subscribers the parent's flow had (a run
/// history sees a subflow's run beside its parent's).
#[derive(Clone, Debug)]
pub(crate) struct Inherited {
    pub(crate) executor: Executor,
    pub(crate) store: Option<ResultStore>,
    pub(crate) persist_all: bool,
    pub(crate) subscribers: Vec<Subscriber>,
}

tokio::task_local! {
    /// Set while a subflow task run's future is polled: what its flow run inherits.
    static PARENT: Arc<Inherited>;
}

/// What the parent run gives the subflow being run here, if this is a subflow task run.
pub(crate) fn inherited() -> Option<Arc<Inherited>> {
    PARENT.try_with(Arc::clone).ok()
}

/// Runs `fut` (a subflow task run) with `inherited` as its parent's settings.
pub(crate) async fn with_parent<F: std::future::Future>(inherited: Arc<Inherited>, fut: F) -> F::Output {
    PARENT.scope(inherited, fut).await
}

/// What a [`crate::RunHandle`] tells its run.
#[derive(Debug)]
pub(crate) enum Control {
    /// Stop: pending task runs end `Cancelled`, running attempts are dropped or abandoned.
    Cancel,
    /// Attach a subscriber from now on.
    Subscribe(Subscriber),
}

/// Runs `graph` with these parameter values to completion (or until `control` cancels it).
pub(crate) async fn execute(
    graph: Arc<Graph>,
    params: Vec<Value>,
    options: RunOptions,
    id: FlowRunId,
    control: Option<mpsc::UnboundedReceiver<Control>>,
) -> RunRecord {
    scheduler::run(graph, params, options, id, control).await
}
