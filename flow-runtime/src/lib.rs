//! The runtime of [tideflow](https://docs.rs/tideflow): the graph a flow is, the states
//! its task runs go through, and the engine that runs it.
//!
//! Users depend on the `tideflow` crate, which re-exports what is public here; the macros
//! in `flow-macros` generate code against [`builder`], [`checks`] and [`task`].

#![warn(missing_docs)]

mod branch;
pub mod builder;
pub mod checks;
pub mod context;
mod engine;
pub mod error;
pub mod event;
pub mod executor;
pub mod flow;
pub mod graph;
pub mod handle;
pub mod notify;
pub mod registry;
mod render;
pub mod run;
pub mod state;
pub mod store;
pub mod task;
pub mod value;
pub mod worker;

pub use context::{FlowRunId, InvalidRunId, Secret, SecretError, TaskContext, TaskRunId};
pub use engine::wire;
pub use error::{FlowError, SignalKind, TaskError};
pub use event::{Delivery, Received, RunEvent, Subscription};
pub use executor::{
    Cluster, ClusterConnection, ClusterExecutor, ClusterReply, Executor, LocalExecutor, SequentialExecutor,
};
pub use flow::Flow;
/// Schedules of flows and `serve`'s policies (the `flow-schedule` crate).
pub use flow_schedule as schedule;
pub use graph::{Graph, Input, Node, NodeId, NodeKind, ParamSpec, Source};
pub use handle::RunHandle;
#[cfg(feature = "slack")]
pub use notify::SlackNotifier;
pub use notify::{HandlerResult, StateChange, StateHandler, StateKind};
pub use run::{ChildRun, FlowRun, TaskRun};
pub use state::State;
pub use store::ResultStore;
pub use task::{
    find_task, registered_tasks, Backoff, Task, TaskBody, TaskDef, TaskOptions, TaskParam, TaskRegistration,
    Trigger,
};

#[doc(hidden)]
pub use inventory;
