//! The flow graph: data that can be inspected and printed before anything runs.

use std::fmt;

use crate::task::{TaskDef, TaskOptions};
use crate::value::Value;

/// A task's position in its flow's graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The node at `index` in [`Graph::nodes`] (for graphs built by hand).
    ///
    /// # Panics
    /// When `index` does not fit in a `u32`.
    pub fn from_index(index: usize) -> Self {
        match u32::try_from(index) {
            Ok(i) => NodeId(i),
            Err(_) => panic!("a graph holds at most {} nodes", u32::MAX),
        }
    }

    /// The position, from 0, in the order the flow declares its tasks.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Splits a collection value into its elements (a map's fan-out).
pub type SplitFn = fn(Value) -> Vec<Value>;

/// Builds one value out of several (a reduce into `Vec<T>`, a tuple or an array).
pub type CollectFn = fn(Vec<Value>) -> Value;

/// Where one value comes from.
#[derive(Clone)]
pub enum Source {
    /// The result of a (non-mapped) task.
    Node(NodeId),
    /// A flow parameter, by its position in [`Graph::params`].
    Param(usize),
    /// A constant written in the flow, with its source text.
    Const(Value, &'static str),
    /// Every result of a mapped task, in map order, collected into a `Vec<T>`.
    /// Children that produced no value (skipped, or failed under a permissive trigger)
    /// are left out.
    Reduce(NodeId, CollectFn),
    /// A tuple or array of values, built from its parts. It has a value only when every
    /// part has one (a branch of an `if` is gathered with its gate this way).
    Gather(Vec<Source>, CollectFn),
    /// The value of whichever branch of an `if` ran: the first part that has a value.
    /// `flow!` gathers each branch's value with the gate of its branch, so exactly one
    /// part has a value when one branch ran and none when every branch was skipped.
    First(Vec<Source>),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Node(id) => write!(f, "Node({})", id.0),
            Source::Param(i) => write!(f, "Param({i})"),
            Source::Const(_, text) => write!(f, "Const({text})"),
            Source::Reduce(id, _) => write!(f, "Reduce({})", id.0),
            Source::Gather(parts, _) => f.debug_tuple("Gather").field(parts).finish(),
            Source::First(parts) => f.debug_tuple("First").field(parts).finish(),
        }
    }
}

/// How one parameter of a task receives its value.
#[derive(Clone)]
pub enum Input {
    /// The same value for the task (and for every child of a mapped task: `unmapped`).
    Value(Source),
    /// Mapped: the source is a collection; child `i` receives element `i`.
    FanOut(Source, SplitFn),
    /// Mapped over a mapped task: child `i` receives the result of that task's child `i`
    /// (element-wise: it starts as soon as that child is done).
    Zip(NodeId),
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Value(s) => f.debug_tuple("Value").field(s).finish(),
            Input::FanOut(s, _) => f.debug_tuple("FanOut").field(s).finish(),
            Input::Zip(id) => write!(f, "Zip({})", id.0),
        }
    }
}

/// What a node is to the scheduler: a task, or a piece of an `if` in the flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeKind {
    /// A task call (the default).
    #[default]
    Call,
    /// The gate of one branch of an `if`: it succeeds when its branch is taken and skips
    /// otherwise; every task of the branch runs after it.
    Gate,
    /// The merge of an `if`'s value: the value of the branch that ran.
    Merge,
}

/// One task in the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// The name runs report it under: its `let` binding, else the task name (made unique
    /// with `-2`, `-3`… when a task is called more than once without a binding).
    pub name: String,
    /// The task.
    pub task: &'static TaskDef,
    /// The task's options in this flow: its `#[task(..)]` options unless the flow
    /// overrides them ([`crate::Flow::with_task_options`]).
    pub options: TaskOptions,
    /// A mapped task (`task.map(..)`): one child run per element.
    pub mapped: bool,
    /// One input per data parameter of the task, in order.
    pub inputs: Vec<Input>,
    /// Ordering-only dependencies (`.after(..)`).
    pub after: Vec<NodeId>,
    /// A task call, or a gate or merge of an `if`.
    pub kind: NodeKind,
}

/// The value of a required parameter that was not set: a run with one fails before
/// anything runs, naming the parameter.
#[derive(Debug)]
pub(crate) struct Unset;

/// A flow parameter.
#[derive(Clone)]
pub struct ParamSpec {
    /// The parameter's name.
    pub name: &'static str,
    /// Its type, as written.
    pub ty: &'static str,
    /// Its default value; `None` for a required parameter (declared without one), which
    /// every run must set.
    pub default: Option<Value>,
    /// Converts a JSON value into a value of the parameter's type.
    pub from_json: fn(serde_json::Value) -> Result<Value, String>,
    /// Renders a value of the parameter's type as JSON.
    pub to_json: fn(&Value) -> serde_json::Value,
}

impl fmt::Debug for ParamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamSpec")
            .field("name", &self.name)
            .field("ty", &self.ty)
            .field("default", &self.default.as_ref().map(|d| (self.to_json)(d)))
            .finish()
    }
}

/// A flow's tasks, their wiring and its parameters.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The flow's name.
    pub name: &'static str,
    /// The flow's doc comment.
    pub description: &'static str,
    /// Tasks, in declaration order (which is a topological order).
    pub nodes: Vec<Node>,
    /// Parameters, in declaration order.
    pub params: Vec<ParamSpec>,
    /// Where the flow's output comes from (`None` for a flow returning `()`).
    pub output: Option<Source>,
}

impl Graph {
    /// The edges between tasks, each once: (from node, to node, kind), the kind as
    /// [`crate::Flow::to_dot`] labels it (`data`, `mapped`, `reduce`, `after`, ...).
    pub fn task_edges(&self) -> Vec<(usize, usize, &'static str)> {
        crate::render::task_edges(self)
    }

    /// The node named `name` (binding name, or task name for an unbound call).
    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| NodeId(i as u32))
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }
}
