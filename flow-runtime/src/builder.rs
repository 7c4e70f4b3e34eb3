//! What `flow!` expands to: a typed builder of the graph, and the traits whose bounds
//! check the wiring. Not public API: only generated code uses it.
//!
//! Every value a flow wires is a typed handle: [`Single<T>`] (a task result, a parameter,
//! a gathered tuple) or [`Mapped<T>`] (the results of a mapped task, element type `T`).
//! Each argument becomes an [`Arg<T>`], `T` being what the argument offers the task; the
//! checks in [`crate::checks`] then compare `T` with the parameter's type, so a mismatch is
//! a compile error on the user's argument that names the task and both types.

use std::collections::HashSet;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::branch;
use crate::flow::Flow;
use crate::graph::{Graph, Input, Node, NodeId, NodeKind, ParamSpec, Source};
use crate::task::{Task, TaskDef};
use crate::value::{self, Value};

/// A single value in a flow: a task's result, a parameter, a tuple of values.
pub struct Single<T> {
    source: Source,
    node: Option<NodeId>,
    _t: PhantomData<fn() -> T>,
}

/// The results of a mapped task: one `T` per child.
pub struct Mapped<T> {
    node: NodeId,
    _t: PhantomData<fn() -> T>,
}

/// One argument of a task call, offering a `T` (per child, in a mapped call).
pub struct Arg<T> {
    input: Input,
    _t: PhantomData<fn() -> T>,
}

impl<T> Arg<T> {
    fn new(input: Input) -> Self {
        Arg {
            input,
            _t: PhantomData,
        }
    }

    /// The type this argument offers, for the checks.
    pub fn payload(&self) -> PhantomData<T> {
        PhantomData
    }

    /// The graph input.
    pub fn into_input(self) -> Input {
        self.input
    }

    fn into_source(self) -> Source {
        match self.input {
            Input::Value(s) => s,
            // `flow!` only gathers non-mapped arguments.
            Input::FanOut(s, _) => s,
            Input::Zip(node) => Source::Node(node),
        }
    }
}

/// A task result or parameter passed whole (also `unmapped(x)` in a `.map(..)`).
pub fn whole<T>(h: &Single<T>) -> Arg<T> {
    Arg::new(Input::Value(h.source.clone()))
}

/// A mapped task's results passed to a task that takes them all at once (`Vec<T>`).
/// The arg offers `T`; [`crate::checks::MappedInput`] requires the parameter to be `Vec<T>`.
pub fn reduce<T: Clone + Send + Sync + 'static>(h: &Mapped<T>) -> Arg<T> {
    Arg::new(Input::Value(Source::Reduce(h.node, collect_vec::<T>)))
}

/// A mapped task's results in a `.map(..)`: child `i` gets the result of child `i`.
pub fn zip<T>(h: &Mapped<T>) -> Arg<T> {
    Arg::new(Input::Zip(h.node))
}

/// A constant argument; `text` is its source, for printing the graph.
pub fn constant<T: Send + Sync + 'static>(v: T, text: &'static str) -> Arg<T> {
    Arg::new(Input::Value(Source::Const(value::value(v), text)))
}

impl<T> Single<T> {
    pub(crate) fn source(&self) -> Source {
        self.source.clone()
    }
}

/// A mapped argument: the source is a collection, split into one value per child.
pub(crate) fn fan_out<T>(source: Source, split: crate::graph::SplitFn) -> Arg<T> {
    Arg::new(Input::FanOut(source, split))
}

/// A branch of an `if` gathered with its gate: the branch's value (the gate gives `()`).
fn branch_value(mut parts: Vec<Value>) -> Value {
    parts.pop().unwrap_or_else(|| value::value(()))
}

fn collect_vec<T: Clone + Send + Sync + 'static>(parts: Vec<Value>) -> Value {
    let v: Vec<T> = parts
        .into_iter()
        .filter_map(|p| value::take::<T>(p).ok())
        .collect();
    value::value(v)
}

macro_rules! gather_tuple {
    ($gather:ident, $collect:ident; $($t:ident $a:ident),+) => {
        /// A tuple of arguments passed as one.
        #[allow(clippy::too_many_arguments)]
        pub fn $gather<$($t: Clone + Send + Sync + 'static),+>($($a: Arg<$t>),+) -> Arg<($($t,)+)> {
            Arg::new(Input::Value(Source::Gather(vec![$($a.into_source()),+], $collect::<$($t),+>)))
        }

        fn $collect<$($t: Clone + Send + Sync + 'static),+>(parts: Vec<Value>) -> Value {
            let mut it = parts.into_iter();
            // A gathered input is only built when every part produced a value.
            let tuple = ($(
                match it.next().map(value::take::<$t>) {
                    Some(Ok(v)) => v,
                    _ => return value::value(()),
                },
            )+);
            value::value(tuple)
        }
    };
}

gather_tuple!(gather1, collect1; A a);
gather_tuple!(gather2, collect2; A a, B b);
gather_tuple!(gather3, collect3; A a, B b, C c);
gather_tuple!(gather4, collect4; A a, B b, C c, D d);
gather_tuple!(gather5, collect5; A a, B b, C c, D d, E e);
gather_tuple!(gather6, collect6; A a, B b, C c, D d, E e, F f);
gather_tuple!(gather7, collect7; A a, B b, C c, D d, E e, F f, G g);
gather_tuple!(gather8, collect8; A a, B b, C c, D d, E e, F f, G g, H h);

/// A gathered tuple of values of one type, turned into an array (see
/// [`crate::checks::Uniform`]).
pub(crate) fn as_array<T: Clone + Send + Sync + 'static, const N: usize, Tuple>(
    arg: Arg<Tuple>,
) -> Arg<[T; N]> {
    let source = match arg.into_source() {
        Source::Gather(parts, _) => Source::Gather(parts, collect_array::<T, N>),
        other => other,
    };
    Arg::new(Input::Value(source))
}

fn collect_array<T: Clone + Send + Sync + 'static, const N: usize>(parts: Vec<Value>) -> Value {
    let items: Vec<T> = parts
        .into_iter()
        .filter_map(|p| value::take::<T>(p).ok())
        .collect();
    match <[T; N]>::try_from(items) {
        Ok(array) => value::value(array),
        Err(_) => value::value(()),
    }
}

/// Anything `.after(..)` accepts.
pub trait Dependency {
    /// The task node, if the value comes from a task.
    fn node(&self) -> Option<NodeId>;
}

impl<T> Dependency for Single<T> {
    fn node(&self) -> Option<NodeId> {
        self.node
    }
}

impl<T> Dependency for Mapped<T> {
    fn node(&self) -> Option<NodeId> {
        Some(self.node)
    }
}

/// Builds a flow's graph; `flow!` calls it once per declared item, in order.
pub struct FlowBuilder {
    name: &'static str,
    description: &'static str,
    nodes: Vec<Node>,
    params: Vec<ParamSpec>,
    names: HashSet<String>,
}

impl FlowBuilder {
    /// A flow named `name` with its doc comment.
    pub fn new(name: &'static str, description: &'static str) -> Self {
        FlowBuilder {
            name,
            description,
            nodes: Vec::new(),
            params: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Declares a parameter with its default (through [`crate::checks::FlowParam`]).
    pub(crate) fn param<T>(&mut self, name: &'static str, ty: &'static str, default: T) -> Single<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.declare_param::<T>(name, ty, Some(value::value(default)))
    }

    /// Declares a required parameter (no default): every run must set it.
    pub(crate) fn required_param<T>(&mut self, name: &'static str, ty: &'static str) -> Single<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.declare_param::<T>(name, ty, None)
    }

    fn declare_param<T>(&mut self, name: &'static str, ty: &'static str, default: Option<Value>) -> Single<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.params.push(ParamSpec {
            name,
            ty,
            default,
            from_json: param_from_json::<T>,
            to_json: param_to_json::<T>,
        });
        Single {
            source: Source::Param(self.params.len() - 1),
            node: None,
            _t: PhantomData,
        }
    }

    /// Adds a task call; `binding` is its `let` name, or `""` for an unbound call.
    pub fn task<Tk: Task>(
        &mut self,
        binding: &'static str,
        inputs: Vec<Input>,
        after: Vec<Option<NodeId>>,
    ) -> Single<Tk::Output> {
        let node = self.push::<Tk>(binding, false, inputs, after);
        Single {
            source: Source::Node(node),
            node: Some(node),
            _t: PhantomData,
        }
    }

    /// Adds a mapped task call (`task.map(..)`).
    pub fn map<Tk: Task>(
        &mut self,
        binding: &'static str,
        inputs: Vec<Input>,
        after: Vec<Option<NodeId>>,
    ) -> Mapped<Tk::Output> {
        let node = self.push::<Tk>(binding, true, inputs, after);
        Mapped {
            node,
            _t: PhantomData,
        }
    }

    /// Adds the gate of one branch of an `if`, named `name` (`if flag`, `else flag`): it
    /// succeeds when `condition` is `when` and ends `Skipped` otherwise (saying that the
    /// condition, written `text` in the flow, was `true` or `false`). Every task call in
    /// the branch runs after it; `after` is the gate of an enclosing branch, if any.
    ///
    /// `flow!` has checked that the condition is a `bool` (see
    /// [`crate::checks::IfCondition`]); another type fails the gate when it runs.
    pub fn gate<T>(
        &mut self,
        name: &'static str,
        condition: Arg<T>,
        text: &'static str,
        when: bool,
        after: Vec<Option<NodeId>>,
    ) -> Single<()> {
        let def = if when { &branch::IF } else { &branch::ELSE };
        let inputs = vec![
            condition.into_input(),
            Input::Value(Source::Const(value::value(text), text)),
        ];
        let node = self.push_def(def, name, false, inputs, after);
        self.nodes[node.index()].kind = NodeKind::Gate;
        Single {
            source: Source::Node(node),
            node: Some(node),
            _t: PhantomData,
        }
    }

    /// Adds the merge of an `if`'s value, named `name`: `branches` pairs each branch's gate
    /// with the value the branch gives. The merge passes on the value of the branch that
    /// ran (see [`Source::First`]).
    pub fn merge<T>(&mut self, name: &'static str, branches: Vec<(Single<()>, Arg<T>)>) -> Single<T> {
        let parts = branches
            .into_iter()
            .map(|(gate, value)| Source::Gather(vec![gate.source, value.into_source()], branch_value))
            .collect();
        let inputs = vec![Input::Value(Source::First(parts))];
        let node = self.push_def(&branch::MERGE, name, false, inputs, Vec::new());
        self.nodes[node.index()].kind = NodeKind::Merge;
        Single {
            source: Source::Node(node),
            node: Some(node),
            _t: PhantomData,
        }
    }

    fn push<Tk: Task>(
        &mut self,
        binding: &'static str,
        mapped: bool,
        inputs: Vec<Input>,
        after: Vec<Option<NodeId>>,
    ) -> NodeId {
        self.push_def(Tk::DEF, binding, mapped, inputs, after)
    }

    /// Adds a node; `binding` is its name, or `""` for the task's name.
    fn push_def(
        &mut self,
        def: &'static TaskDef,
        binding: &'static str,
        mapped: bool,
        inputs: Vec<Input>,
        after: Vec<Option<NodeId>>,
    ) -> NodeId {
        let base = if binding.is_empty() { def.name } else { binding };
        let mut name = base.to_owned();
        let mut n = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node {
            name,
            task: def,
            options: def.options,
            mapped,
            inputs,
            after: after.into_iter().flatten().collect(),
            kind: NodeKind::Call,
        });
        id
    }

    /// Finishes the graph; `output` is where the flow's output comes from.
    pub fn finish<O: Send + Sync + 'static>(self, output: Option<Arg<O>>) -> Flow<O> {
        Flow::from_graph(Graph {
            name: self.name,
            description: self.description,
            nodes: self.nodes,
            params: self.params,
            output: output.map(Arg::into_source),
        })
    }
}

/// All the results of a mapped task, in map order, as one `Vec<T>` value (a flow's
/// output, or a part of a gathered tuple).
pub fn collect<T: Clone + Send + Sync + 'static>(h: &Mapped<T>) -> Arg<Vec<T>> {
    Arg::new(Input::Value(Source::Reduce(h.node, collect_vec::<T>)))
}

fn param_from_json<T: DeserializeOwned + Send + Sync + 'static>(
    json: serde_json::Value,
) -> Result<Value, String> {
    serde_json::from_value::<T>(json)
        .map(value::value)
        .map_err(|e| e.to_string())
}

fn param_to_json<T: Serialize + 'static>(v: &Value) -> serde_json::Value {
    v.downcast_ref::<T>()
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or(serde_json::Value::Null)
}

impl<T> Clone for Single<T> {
    fn clone(&self) -> Self {
        Single {
            source: self.source.clone(),
            node: self.node,
            _t: PhantomData,
        }
    }
}

impl<T> Clone for Mapped<T> {
    fn clone(&self) -> Self {
        Mapped {
            node: self.node,
            _t: PhantomData,
        }
    }
}

/// A schedule `flow!` checked when it compiled.
pub fn schedule_literal(text: &str) -> crate::schedule::Schedule {
    match crate::schedule::Schedule::parse(text) {
        Ok(schedule) => schedule,
        Err(e) => panic!("flow! checked this schedule when it compiled, yet: {e}"),
    }
}

/// A parameter's value in a schedule, as JSON.
pub fn schedule_param<T: serde::Serialize>(name: &str, value: T) -> serde_json::Value {
    match serde_json::to_value(value) {
        Ok(json) => json,
        Err(e) => panic!("the value of the parameter `{name}` in a schedule cannot be written as JSON: {e}"),
    }
}
