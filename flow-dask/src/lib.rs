//! Task attempts on a Dask cluster, driven through Dask's own Python client.
//!
//! [`DaskBridge`] starts a small Python bridge shipped inside this crate (run with
//! `TIDEFLOW_PYTHON`, else `python3`), which connects to a Dask scheduler or starts a
//! local cluster on 127.0.0.1, and has every Dask worker (those that join later too) start
//! one long-lived tideflow worker process: this program in worker mode
//! ([`flow_runtime::worker`]), reached over a pipe. Each attempt sent to the bridge runs
//! as one Dask task on a worker, which hands it to its tideflow process; the reply comes
//! back as the task's result.
//!
//! The program reaches the workers by its path (same machine, a shared file system, a
//! container image) or uploaded by Dask ([`WorkerProgram::upload`]), which loses the exec
//! bit on the way: the bridge restores it.
//!
//! [`DaskExecutor`] makes a cluster an executor: `flow.executor(DaskExecutor::local(2))`
//! runs the flow's task attempts there (the scheduler stays in this program).

mod bridge;
mod executor;

pub use bridge::{python, Cluster, DaskBridge, DaskError, WorkerProgram, DISTRIBUTED};
pub use executor::DaskExecutor;
