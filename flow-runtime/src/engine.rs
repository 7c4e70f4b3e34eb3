//! The engine: runs a flow's graph on an executor and records every task run.

use std::sync::Arc;

use crate::flow::RunOptions;
use crate::graph::Graph;
use crate::run::RunRecord;
use crate::value::Value;

/// Runs `graph` with these parameter values to completion.
pub(crate) async fn execute(graph: Arc<Graph>, params: Vec<Value>, options: RunOptions) -> RunRecord {
    let _ = (graph, params, options);
    unimplemented!("engine")
}
