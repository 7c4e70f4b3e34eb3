//! What a running task knows about itself.

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

/// The id of one flow run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowRunId(pub Uuid);

impl FlowRunId {
    /// A new random id.
    pub fn new() -> Self {
        FlowRunId(Uuid::new_v4())
    }
}

impl Default for FlowRunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for FlowRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The id of one task run: the flow run, the task's node in the graph, and the map index
/// of a mapped child. Stable across retries (the attempt is counted separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskRunId {
    /// The flow run.
    pub flow_run: FlowRunId,
    /// The task's position in the flow's graph.
    pub node: u32,
    /// The child's index, for a mapped child.
    pub map_index: Option<u32>,
}

impl fmt::Display for TaskRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.flow_run, self.node)?;
        if let Some(i) = self.map_index {
            write!(f, "-{i}")?;
        }
        Ok(())
    }
}

/// What a task run knows about itself; a task receives it by taking a `&TaskContext`
/// parameter (`fn whoami(ctx: &TaskContext) -> String`), which is not a data input.
#[derive(Clone, Debug)]
pub struct TaskContext {
    pub(crate) id: TaskRunId,
    pub(crate) flow_name: &'static str,
    pub(crate) task_name: &'static str,
    pub(crate) binding: Arc<str>,
    pub(crate) attempt: u32,
}

impl TaskContext {
    /// The flow run this task run belongs to.
    pub fn flow_run_id(&self) -> FlowRunId {
        self.id.flow_run
    }

    /// This task run's id (the same for every attempt).
    pub fn task_run_id(&self) -> TaskRunId {
        self.id
    }

    /// The flow's name.
    pub fn flow_name(&self) -> &'static str {
        self.flow_name
    }

    /// The task's name (its `name` option, or the function's name).
    pub fn task_name(&self) -> &'static str {
        self.task_name
    }

    /// The name of the task in this flow: the `let` binding, or the task name.
    pub fn binding(&self) -> &str {
        &self.binding
    }

    /// The index of this child in its map, for a mapped child.
    pub fn map_index(&self) -> Option<usize> {
        self.id.map_index.map(|i| i as usize)
    }

    /// The attempt, counted from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// `clean[3]` for a mapped child, `clean` otherwise (the binding name).
    pub fn full_name(&self) -> String {
        match self.id.map_index {
            Some(i) => format!("{}[{i}]", self.binding),
            None => self.binding.to_string(),
        }
    }
}
