//! The workloads `benches/engine.rs` and `benches/scale.rs` measure, and their floors.
//!
//! Graphs are built by hand ([`Graph`], [`Node`], [`Input`], [`Source`]) so that their
//! size is a runtime value: a 10,000-deep chain cannot be written in `flow!`. The tasks are
//! ordinary `#[task]` functions, so a task run costs exactly what it costs a user.
//!
//! | workload    | graph                                               | task runs | output              |
//! |-------------|-----------------------------------------------------|-----------|---------------------|
//! | `map`       | `numbers(n)` → `add1.map`, output = the mapped results | n + 1     | `vec![1, 2, .., n]` |
//! | `chain`     | `add1(0)` → `add1` → … (n tasks, each reads the last)  | n         | `n`                 |
//! | `mapreduce` | `numbers(n)` → `add1.map` → `add1.map` → `total`       | 2n + 2    | Σ (i + 2), i < n    |
//!
//! `add1` is the sync task or the async one (`add1_async`), as chosen; `numbers` and
//! `total` are sync. Every run checks its output: a mismatch panics with what was expected.
//!
//! The floor of a workload is the same arithmetic as a plain loop over the same data
//! (`black_box` on every element, so the compiler cannot fold it away), with the same
//! vectors materialised where the flow materialises them.

use std::any::Any;
use std::fmt;
use std::hint::black_box;
use std::sync::Arc;

use tideflow::graph::{Graph, Input, Node, NodeId, NodeKind, Source};
use tideflow::prelude::*;
use tideflow::task_def::Task;
use tideflow::{Executor, TaskDef};

/// A task value, as the graph's split and collect functions see it.
type Value = Arc<dyn Any + Send + Sync>;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn add1(x: u64) -> u64 {
    x + 1
}

#[task]
async fn add1_async(x: u64) -> u64 {
    x + 1
}

/// What `add1_working` works, in µs: `TIDEFLOW_BENCH_WORK_US` (read once; the worker
/// processes of a cluster inherit it).
fn work_us() -> u64 {
    static US: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *US.get_or_init(|| {
        std::env::var("TIDEFLOW_BENCH_WORK_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// `add1` after `TIDEFLOW_BENCH_WORK_US` µs of work (a sleep: a task that waits on I/O or
/// another service, as short mapped tasks often do).
#[task]
fn add1_working(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_micros(work_us()));
    x + 1
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

/// The shape of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `numbers(n)` → `add1.map`; the flow's output is the mapped results.
    Map,
    /// `n` tasks `add1`, each reading the previous one's result.
    Chain,
    /// `numbers(n)` → `add1.map` → `add1.map` → `total`.
    MapReduce,
}

impl Kind {
    /// The workload's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Map => "map",
            Kind::Chain => "chain",
            Kind::MapReduce => "mapreduce",
        }
    }

    /// How many task runs a flow of this shape over `n` elements makes.
    pub fn task_runs(self, n: u64) -> u64 {
        match self {
            Kind::Map => n + 1,
            Kind::Chain => n,
            Kind::MapReduce => 2 * n + 2,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `add1` is the sync task or the async one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `#[task] fn add1(x: u64) -> u64`: runs on the compute pool (or inline, once fast).
    Sync,
    /// `#[task] async fn add1_async(x: u64) -> u64`: runs on tokio.
    Async,
    /// `#[task] fn add1_working(x: u64) -> u64`: sync, after `TIDEFLOW_BENCH_WORK_US` µs.
    #[allow(dead_code)] // `benches/scale.rs` makes it (`--work-us`), `benches/engine.rs` does not.
    Working,
}

impl Body {
    /// `sync` or `async`.
    pub fn name(self) -> &'static str {
        match self {
            Body::Sync => "sync",
            Body::Async => "async",
            Body::Working => "working",
        }
    }

    fn add1(self) -> &'static TaskDef {
        match self {
            Body::Sync => <add1 as Task>::DEF,
            Body::Async => <add1_async as Task>::DEF,
            Body::Working => <add1_working as Task>::DEF,
        }
    }
}

impl fmt::Display for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tokio runtime the benchmarks run flows on: multi-thread with 2 workers (the
/// machine the targets are set for has 2 cores), driven by `block_on` from the calling
/// thread, exactly as `#[tokio::main]` runs a user's `main` on such a machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A flow of one workload, built once and run any number of times.
pub struct Workload {
    kind: Kind,
    n: u64,
    flow: Built,
}

enum Built {
    Vec(Flow<Vec<u64>>),
    U64(Flow<u64>),
}

impl Workload {
    /// Builds the graph of `kind` over `n` elements with `body` as `add1`, to run on `executor`.
    ///
    /// # Panics
    /// A chain of 0 tasks (it has no output).
    pub fn new(kind: Kind, n: u64, body: Body, executor: impl Into<Executor>) -> Self {
        let add1 = body.add1();
        let flow = match kind {
            Kind::Map => Built::Vec(
                Flow::from_graph(graph(
                    "map",
                    vec![
                        node("numbers", <numbers as Task>::DEF, false, vec![constant(n)]),
                        node("add1", add1, true, vec![fan_out(0)]),
                    ],
                    Source::Reduce(id(1), collect_u64),
                ))
                .executor(executor),
            ),
            Kind::Chain => {
                assert!(n > 0, "a chain needs at least one task");
                let nodes = (0..n as usize)
                    .map(|i| {
                        let input = match i {
                            0 => constant(0),
                            _ => Input::Value(Source::Node(id(i - 1))),
                        };
                        node(&format!("add1_{i}"), add1, false, vec![input])
                    })
                    .collect();
                Built::U64(
                    Flow::from_graph(graph("chain", nodes, Source::Node(id(n as usize - 1))))
                        .executor(executor),
                )
            }
            Kind::MapReduce => Built::U64(
                Flow::from_graph(graph(
                    "mapreduce",
                    vec![
                        node("numbers", <numbers as Task>::DEF, false, vec![constant(n)]),
                        node("a", add1, true, vec![fan_out(0)]),
                        node("b", add1, true, vec![Input::Zip(id(1))]),
                        node(
                            "total",
                            <total as Task>::DEF,
                            false,
                            vec![Input::Value(Source::Reduce(id(2), collect_u64))],
                        ),
                    ],
                    Source::Node(id(3)),
                ))
                .executor(executor),
            ),
        };
        Workload { kind, n, flow }
    }

    /// Persists every task's result in a result store in `dir` (`Flow::persist_results`).
    #[allow(dead_code)] // used by the scale bench only
    pub fn persist_in(mut self, dir: &std::path::Path) -> Self {
        let store = tideflow::ResultStore::local(dir);
        self.flow = match self.flow {
            Built::Vec(f) => Built::Vec(f.persist_results().result_store(store)),
            Built::U64(f) => Built::U64(f.persist_results().result_store(store)),
        };
        self
    }

    /// Records every run in `history`.
    #[allow(dead_code)] // used by the scale bench, not the engine bench
    pub fn record_in(mut self, history: &tideflow::history::History) -> Self {
        self.flow = match self.flow {
            Built::Vec(f) => Built::Vec(history.record(f)),
            Built::U64(f) => Built::U64(history.record(f)),
        };
        self
    }

    /// How many task runs one run makes.
    pub fn task_runs(&self) -> u64 {
        self.kind.task_runs(self.n)
    }

    /// Runs the flow once, checks its output and drops the run record (the time of all
    /// three is the engine's: a user's run pays for its record too).
    ///
    /// # Panics
    /// A failed run, or an output other than the expected one.
    pub async fn run(&self) -> tideflow::FlowRunId {
        match &self.flow {
            Built::Vec(flow) => {
                let run = flow.run().await;
                match run.output() {
                    Ok(out) => check_map(self.n, out),
                    Err(e) => self.failed(e),
                }
                run.id()
            }
            Built::U64(flow) => {
                let run = flow.run().await;
                match run.output() {
                    Ok(&out) => self.check(out),
                    Err(e) => self.failed(e),
                }
                run.id()
            }
        }
    }

    fn check(&self, got: u64) {
        let want = match self.kind {
            Kind::Chain => self.n,
            Kind::MapReduce => self.n * self.n.saturating_sub(1) / 2 + 2 * self.n,
            Kind::Map => unreachable!("a map's output is a vector"),
        };
        assert_eq!(
            got, want,
            "{} over {}: the flow's output is {got}, expected {want}",
            self.kind, self.n
        );
    }

    fn failed(&self, e: FlowError) -> ! {
        panic!("{} over {}: the flow run failed: {e}", self.kind, self.n)
    }
}

fn check_map(n: u64, out: &[u64]) {
    assert_eq!(
        out.len() as u64,
        n,
        "map over {n}: the flow's output has {} elements, expected {n}",
        out.len()
    );
    if let Some((i, &x)) = out.iter().enumerate().find(|&(i, &x)| x != i as u64 + 1) {
        panic!(
            "map over {n}: element {i} of the flow's output is {x}, expected {}",
            i + 1
        );
    }
}

/// The floor of `kind` over `n` elements: the same arithmetic in a plain loop, checked
/// as the flow's output is.
pub fn floor(kind: Kind, n: u64) {
    let n = black_box(n);
    match kind {
        Kind::Map => {
            let xs: Vec<u64> = (0..n).collect();
            let ys: Vec<u64> = black_box(xs).into_iter().map(|x| black_box(x) + 1).collect();
            check_map(n, black_box(&ys));
        }
        Kind::Chain => {
            let mut x = 0u64;
            for _ in 0..n {
                x = black_box(x) + 1;
            }
            assert_eq!(x, n, "chain floor over {n}");
        }
        Kind::MapReduce => {
            let xs: Vec<u64> = (0..n).collect();
            let a: Vec<u64> = black_box(xs).into_iter().map(|x| black_box(x) + 1).collect();
            let b: Vec<u64> = black_box(a).into_iter().map(|x| black_box(x) + 1).collect();
            let total: u64 = black_box(b).iter().sum();
            let want = n * n.saturating_sub(1) / 2 + 2 * n;
            assert_eq!(total, want, "mapreduce floor over {n}");
        }
    }
}

// ---------------------------------------------------------------- building graphs

fn id(index: usize) -> NodeId {
    NodeId::from_index(index)
}

fn node(name: &str, task: &'static TaskDef, mapped: bool, inputs: Vec<Input>) -> Node {
    Node {
        name: name.to_owned(),
        task,
        options: task.options,
        mapped,
        inputs,
        after: Vec::new(),
        kind: NodeKind::Call,
    }
}

fn graph(name: &'static str, nodes: Vec<Node>, output: Source) -> Graph {
    Graph {
        name,
        description: "",
        nodes,
        params: Vec::new(),
        output: Some(output),
    }
}

fn constant(v: u64) -> Input {
    Input::Value(Source::Const(Arc::new(v), "n"))
}

/// One child per element of node `i`'s `Vec<u64>`.
fn fan_out(i: usize) -> Input {
    Input::FanOut(Source::Node(id(i)), split_u64)
}

/// What `flow!` generates for mapping over a `Vec<u64>`: the vector moved out when this
/// is its last reader, each element boxed as a value of its own.
fn split_u64(v: Value) -> Vec<Value> {
    match v.downcast::<Vec<u64>>() {
        Ok(xs) => Arc::try_unwrap(xs)
            .unwrap_or_else(|shared| (*shared).clone())
            .into_iter()
            .map(|x| Arc::new(x) as Value)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// What `flow!` generates for reducing mapped `u64` results into a `Vec<u64>`.
fn collect_u64(parts: Vec<Value>) -> Value {
    let xs: Vec<u64> = parts
        .into_iter()
        .filter_map(|p| p.downcast::<u64>().ok())
        .map(|x| Arc::try_unwrap(x).unwrap_or_else(|shared| *shared))
        .collect();
    Arc::new(xs)
}
