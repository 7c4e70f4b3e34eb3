//! # tideflow
//!
//! Typed workflow orchestration: plain functions become tasks with `#[task]`, a
//! [`flow!`] block wires them into a graph the compiler checks, and the engine runs that
//! graph with retries, mapping, triggers and states, at microseconds per task.
//!
//! ```
//! use tideflow::prelude::*;
//!
//! #[task]
//! fn numbers(n: u64) -> Vec<u64> {
//!     (1..=n).collect()
//! }
//!
//! #[task(max_retries = 2, retry_delay = "10ms")]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! #[task]
//! fn total(xs: Vec<u64>) -> u64 {
//!     xs.iter().sum()
//! }
//!
//! flow! {
//!     /// Sum of squares.
//!     pub fn sum_of_squares(n: u64 = 3) -> u64 {
//!         let xs = numbers(n);
//!         let squares = square.map(xs);
//!         total(squares)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let run = sum_of_squares().run().await;
//! assert_eq!(run.output(), Ok(&14));
//! # }
//! ```

//!
//! ## Holding a run, watching it, cancelling it
//!
//! [`Flow::run`] runs a flow to its end. [`Flow::start`] starts it in the background and
//! returns a [`RunHandle`] at once: the run's id, [`RunHandle::cancel`],
//! [`RunHandle::subscribe`], and, awaited, the same [`FlowRun`]. Every state change of
//! a run is an [`event::RunEvent`] that subscribers receive in order; see [`event`] for
//! lossless and lossy delivery.
//!
//! ```
//! use std::time::Duration;
//! use tideflow::event::{Delivery, Received};
//! use tideflow::prelude::*;
//!
//! #[task]
//! fn hello() -> String {
//!     "hello".to_owned()
//! }
//!
//! #[task]
//! async fn slow(s: String) -> String {
//!     tokio::time::sleep(Duration::from_secs(3600)).await;
//!     s
//! }
//!
//! flow! {
//!     fn greet() -> String {
//!         hello()
//!     }
//!
//!     fn greet_slowly() -> String {
//!         let s = hello();
//!         slow(s)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Every event of every run of this flow value, none dropped.
//! let mut flow = greet();
//! let mut events = flow.subscribe(Delivery::lossless(256));
//! let run = flow.run().await;
//! assert!(run.state().is_successful());
//! let mut seen = Vec::new();
//! while let Some(Received::Event(e)) = events.try_recv() {
//!     seen.push(format!("{} {} -> {}", e.name(), e.old.name(), e.new.name()));
//! }
//! assert_eq!(
//!     seen,
//!     [
//!         "greet Pending -> Running",
//!         "hello Pending -> Running",
//!         "hello Running -> Success",
//!         "greet Running -> Success",
//!     ]
//! );
//!
//! // A run in the background, cancelled.
//! let handle = greet_slowly().start();
//! tokio::time::sleep(Duration::from_millis(10)).await;
//! handle.cancel();
//! let run = handle.await;
//! assert!(run.state().is_cancelled());
//! assert!(run.task("s").state().is_success());
//! assert!(run.task("slow").state().is_cancelled());
//! # }
//! ```

#![warn(missing_docs)]

pub use flow_macros::{flow, task};
#[cfg(feature = "slack")]
pub use flow_runtime::SlackNotifier;
pub use flow_runtime::{
    context, error, executor, graph, run, state, task as task_def, Backoff, ChildRun, Executor, Flow,
    FlowError, FlowRun, FlowRunId, Graph, LocalExecutor, Secret, SecretError, SequentialExecutor, SignalKind,
    State, TaskContext, TaskDef, TaskError, TaskOptions, TaskRun, TaskRunId, Trigger,
};
pub use flow_runtime::{event, wire, worker, RunHandle};

/// Task attempts on a Dask cluster (feature `dask`, on by default): see [`flow_dask`].
#[cfg(feature = "cli")]
pub use flow_cli as cli;
#[cfg(feature = "dashboard")]
pub use flow_dashboard as dashboard;
#[cfg(feature = "dask")]
pub use flow_dask as dask;
#[cfg(feature = "history")]
pub use flow_history as history;
pub use flow_runtime::registry::{registered_flows, DynFlow, DynFlowRun, FlowRegistration};
pub use flow_runtime::schedule;
pub use flow_runtime::{find_task, registered_tasks};
pub use flow_runtime::{notify, HandlerResult, StateChange, StateHandler, StateKind};
pub use flow_runtime::{store, ResultStore};
#[cfg(feature = "serve")]
pub use flow_serve as serve;

/// Everything a flow file needs: `use tideflow::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "slack")]
    pub use crate::SlackNotifier;
    pub use crate::{
        flow, task, Flow, FlowError, FlowRun, LocalExecutor, ResultStore, RunHandle, SequentialExecutor,
        State, StateChange, StateKind, TaskContext, TaskError, TaskRun, Trigger,
    };
}

#[doc(hidden)]
pub use flow_runtime::checks::{
    Arity, Exact, FlowOutput, FlowParam, IntoTaskError, MapElement, MapOver, MappedInput, NoOutput,
    PerElement, Portable, ReducedFits, Shareable, TaskInput, TaskIo, Uniform,
};
#[doc(hidden)]
pub use flow_runtime::checks::{BranchValue, IfCondition};

/// Not public API: what the code `#[task]` and `flow!` generate refers to.
#[doc(hidden)]
pub mod __private {
    pub use flow_runtime::builder::*;
    pub use flow_runtime::checks::*;
    pub use flow_runtime::inventory;
    pub use flow_runtime::registry::{
        DynFlow, FlowRegistration, OutputView, Show, ShowDebug, ShowDisplay, ShowJson, ShowNothing,
    };
    pub use flow_runtime::schedule::{Missed, ScheduledRun, ServePolicy, WhenBusy};
    pub use flow_runtime::task::{AsyncBody, Backoff, BoxFuture, SubflowFuture, SyncBody, TaskCodec};
    pub use flow_runtime::value::{borrow, take, value, Value};
    pub use flow_runtime::Flow;
    pub use flow_runtime::{
        Input, Task, TaskBody, TaskContext, TaskDef, TaskError, TaskOptions, TaskParam, TaskRegistration,
        Trigger,
    };
    pub use std::boxed::Box;
    pub use std::marker::PhantomData;
    pub use std::result::Result;
    pub use std::time::Duration;
    pub use std::vec::Vec;
}

/// The README's code, compiled as doctests so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
