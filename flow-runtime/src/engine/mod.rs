//! The engine: runs a flow's graph on an executor and records every task run.
//!
//! One scheduler owns the whole run state (no locks on the hot path). It starts ready task
//! runs, at most `max_concurrency` at a time and lowest map index first, so a chain of maps
//! runs element by element (depth first); sync bodies go to a compute pool, async bodies to tokio, and their
//! completions come back through a channel or the engine's `JoinSet`. A result is dropped
//! as soon as its last consumer has read it, unless it is kept for the run record.
//!
//! The order of checks for a task run, as in Prefect: an upstream skip skips it
//! (`skip_on_upstream_skip`), then its trigger decides whether it runs, then an input
//! without a value (its upstream failed or skipped, but the trigger let it through) stops it.
//! A mapped task is checked once as a whole when it expands (upstream states that are the
//! same for every child), then each child with the states of the children it zips over.

mod exec;
mod plan;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::slice;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::stream::{FuturesUnordered, StreamExt as _};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::{AbortHandle, JoinSet};
use tracing::{Instrument as _, Span};

use self::exec::{Clock, Completion, Done, FullName, Job, Outcome, Pool};
use self::plan::{NodePlan, UpRef};
use crate::context::{FlowRunId, TaskContext, TaskRunId};
use crate::executor::{Executor, DEFAULT_INLINE_UNDER};
use crate::flow::RunOptions;
use crate::graph::{Graph, Input, Source};
use crate::notify::{Handlers, StateChange};
use crate::run::{ChildRun, RunRecord, TaskRun};
use crate::state::State;
use crate::store::{NodeStore, ResultStore, RunManifest, RunStore};
use crate::task::{TaskBody, Trigger};
use crate::value::Value;

/// At most this many upstream task runs are named in a trigger or flow failure message.
const LISTED: usize = 10;

/// A sync body whose runs took at most the executor's `inline_under` twice in a row is
/// run inline on the scheduler when the compute pool is idle: handing it to a pool thread
/// and back costs several microseconds of thread wake-ups, far more than the body itself
/// (a chain of small tasks). A slower run sends the task back to the pool.
const INLINE_AFTER: u8 = 2;

/// Runs `graph` with these parameter values to completion.
pub(crate) async fn execute(graph: Arc<Graph>, params: Vec<Value>, options: RunOptions) -> RunRecord {
    let id = options.restart.unwrap_or_default();
    let span = tracing::info_span!("flow_run", flow = graph.name, flow_run_id = %id);
    let engine = Engine::new(graph, params, options, id, span.clone());
    engine.run().instrument(span).await
}

/// A task run, or a mapped task as a whole: which node, which child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct UpId {
    node: usize,
    index: Option<u32>,
}

impl UpId {
    fn own(node: usize) -> Self {
        UpId { node, index: None }
    }

    fn child(node: usize, index: usize) -> Self {
        UpId {
            node,
            index: Some(index as u32),
        }
    }
}

/// Why an input has no value.
#[derive(Clone, Copy, Debug)]
enum Missing {
    /// Its upstream task run ended without a result.
    Up(UpId),
    /// The graph reads a parameter or task it does not have.
    Unknown,
    /// The engine already released the value (a bug, reported rather than hidden).
    Released,
}

/// What a run needs that never changes while it runs.
struct Static {
    graph: Arc<Graph>,
    /// The run's parameter values as JSON, for `TaskContext::parameters`.
    params_json: Arc<serde_json::Map<String, serde_json::Value>>,
    clock: Clock,
    plans: Vec<NodePlan>,
    flow_run: FlowRunId,
    span: Span,
    options: RunOptions,
    /// The flow's task state handlers, `None` when it has none.
    task_handlers: Option<Arc<Handlers>>,
    /// Per node: how it stores results, when it persists or caches them.
    stores: Vec<Option<Arc<NodeStore>>>,
    /// What the run stores, when any task persists or caches results.
    run_store: Option<Arc<RunStore>>,
    /// What a subflow's run takes from this one (`None` when the flow calls no subflow).
    subflow_options: Option<Arc<RunOptions>>,
}

impl Static {
    fn name(&self, u: UpId) -> FullName<'_> {
        FullName(&self.plans[u.node].name, u.index)
    }

    /// Tells the task state handlers, if any, that task run `u` went from `old` to `new`.
    fn notify_task(&self, u: UpId, old: State, new: &State) {
        if let Some(handlers) = &self.task_handlers {
            handlers.call(&StateChange {
                flow: self.graph.name,
                flow_run_id: self.flow_run,
                task: Some(self.name(u).to_string()),
                old,
                new: new.clone(),
                at: SystemTime::now(),
                failed_tasks: Vec::new(),
            });
        }
    }

    /// Tells the flow state handlers, if any, that the flow run went from `old` to `new`.
    fn notify_flow(&self, old: State, new: &State, failed_tasks: Vec<String>) {
        if !self.options.flow_handlers.is_empty() {
            self.options.flow_handlers.call(&StateChange {
                flow: self.graph.name,
                flow_run_id: self.flow_run,
                task: None,
                old,
                new: new.clone(),
                at: SystemTime::now(),
                failed_tasks,
            });
        }
    }
}

/// The run state of one node.
struct NodeRun {
    /// The final state (`Mapped` once a mapped task expanded).
    state: State,
    finished: bool,
    expanded: bool,
    /// Upstream events still awaited before the node is ready or expands.
    waits: u32,
    attempts: u32,
    started_at: Option<SystemTime>,
    ended_at: Option<SystemTime>,
    result: Option<Value>,
    /// Reads of `result` still to come.
    uses: u32,
    // Mapped tasks only:
    children: Vec<ChildRun>,
    done: usize,
    unstarted: usize,
    slots: Vec<Slot>,
    level: Level,
    /// A subflow task's flow runs, by map index.
    subflows: Vec<(Option<u32>, Arc<RunRecord>)>,
}

/// Where each child of a mapped task gets one input from.
enum Slot {
    /// The same value for every child (the last child to start takes it).
    Broadcast(Option<Value>),
    /// A value every child needs but that was not produced.
    Missing(Missing),
    /// One element per child.
    Elements(Vec<Option<Value>>),
    /// The result of the same child of this mapped task.
    Zip(usize),
}

/// The upstream states shared by every child of a mapped task, summed up: one upstream
/// per kind is enough to decide the triggers (all of them are "all"/"any" over
/// successful/failed).
#[derive(Clone, Copy, Default)]
struct Level {
    skipped: Option<UpId>,
    successful: Option<UpId>,
    failed: Option<UpId>,
}

/// A range of ready task runs of one node (`start..end`: map indices; `0..1` for a
/// non-mapped task), ordered lowest map index first, then declaration order.
///
/// Element `i` thus goes down a chain of maps before element `i + 1` starts anywhere: a
/// downstream child is always ready with a lower index than the next upstream child to
/// start, so pipelines run depth first and only about `max_concurrency` intermediate
/// results are alive at once. The sequential executor runs exactly in this order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    start: Reverse<u32>,
    node: Reverse<u32>,
    end: u32,
}

/// How a child ended.
struct ChildEnd {
    state: State,
    result: Option<Value>,
    attempts: u32,
    started_at: Option<SystemTime>,
    ended_at: SystemTime,
}

enum Event {
    Completion(Completion),
    RetryDue(Box<Job>),
    Deadline(Box<Job>),
    Nothing,
    Lost,
}

impl From<Done> for Event {
    fn from(done: Done) -> Self {
        match done {
            Done::Task(c) => Event::Completion(c),
            Done::RetryDue(job) => Event::RetryDue(job),
            Done::Deadline(job) => Event::Deadline(job),
            Done::Worker => Event::Nothing,
        }
    }
}

struct Engine {
    s: Static,
    st: RunState,
}

/// Everything the scheduler changes while the flow runs.
struct RunState {
    nodes: Vec<NodeRun>,
    params: Vec<Value>,
    ready: BinaryHeap<Ready>,
    newly_ready: Vec<usize>,
    in_flight: usize,
    /// Sync task runs handed to the compute pool and not back yet.
    pooled: usize,
    /// Per task (by `task_of`): how many of its sync runs in a row took at most
    /// `inline_under`. Shared by every node calling the same task, so a long chain
    /// of calls to one task learns from its first links.
    fast_runs: Vec<u8>,
    /// Per node: its task's slot in `fast_runs`.
    task_of: Vec<u32>,
    /// Per node: the executor's limited tags its task carries.
    limited_tags: Vec<Vec<u16>>,
    /// Per limited tag: its limit and how many of its runs hold a slot now.
    tag_slots: Vec<(usize, usize)>,
    /// Task runs waiting for a tag slot, in the order they became ready.
    tag_waiting: VecDeque<Job>,
    inline_under: Duration,
    max_concurrency: usize,
    pool: Pool,
    /// Async task runs, polled by the scheduler's task.
    local: FuturesUnordered<Pin<Box<dyn Future<Output = Done> + Send>>>,
    /// Retry timers, timeout deadlines and compute pool workers.
    tasks: JoinSet<Done>,
    /// The deadline timer of each sync attempt with a timeout running on the pool.
    deadlines: HashMap<(usize, Option<u32>), AbortHandle>,
    /// Sync attempts that ran past their timeout, by (node, child, attempt): their late
    /// completions are discarded.
    abandoned: HashSet<(usize, Option<u32>, u32)>,
    tx: UnboundedSender<Completion>,
    rx: UnboundedReceiver<Completion>,
}

impl Engine {
    fn new(
        graph: Arc<Graph>,
        params: Vec<Value>,
        options: RunOptions,
        flow_run: FlowRunId,
        span: Span,
    ) -> Self {
        let plans = plan::plan(&graph, options.keep_results);
        let (max_concurrency, sync_threads, inline_under, tag_limits) = match &options.executor {
            Executor::Local(e) => (
                e.max_concurrency.max(1),
                e.sync_threads.max(1),
                e.inline_under,
                e.tag_limits.clone(),
            ),
            Executor::Sequential => (1, 1, DEFAULT_INLINE_UNDER, Vec::new()),
        };
        // Per node: the limited tags its task carries (indices into `tag_limits`).
        let limited_tags: Vec<Vec<u16>> = graph
            .nodes
            .iter()
            .map(|n| {
                tag_limits
                    .iter()
                    .enumerate()
                    .filter(|(_, (tag, _))| n.options.tags.contains(&tag.as_str()))
                    .map(|(i, _)| i as u16)
                    .collect()
            })
            .collect();
        // One slot per distinct task, in order of first use.
        let mut defs: Vec<*const crate::task::TaskDef> = Vec::new();
        let task_of: Vec<u32> = graph
            .nodes
            .iter()
            .map(|n| {
                let def: *const crate::task::TaskDef = n.task;
                let slot = defs.iter().position(|&d| d == def).unwrap_or_else(|| {
                    defs.push(def);
                    defs.len() - 1
                });
                slot as u32
            })
            .collect();
        let task_count = defs.len();
        let nodes = plans
            .iter()
            .map(|p| NodeRun {
                state: State::Pending,
                finished: false,
                expanded: false,
                waits: p.waits,
                attempts: 0,
                started_at: None,
                ended_at: None,
                result: None,
                uses: p.uses,
                children: Vec::new(),
                done: 0,
                unstarted: 0,
                slots: Vec::new(),
                level: Level::default(),
                subflows: Vec::new(),
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let params_json: serde_json::Map<String, serde_json::Value> = graph
            .params
            .iter()
            .zip(&params)
            .map(|(spec, v)| (spec.name.to_owned(), (spec.to_json)(v)))
            .collect();
        let (stores, run_store) = node_stores(&graph, &options, flow_run, &plans, &params_json);
        Engine {
            s: Static {
                params_json: Arc::new(params_json),
                subflow_options: graph.nodes.iter().any(|n| n.task.is_subflow()).then(|| {
                    Arc::new(RunOptions {
                        executor: options.executor.clone(),
                        store: options.store.clone(),
                        persist_all: options.persist_all,
                        ..RunOptions::default()
                    })
                }),
                stores,
                run_store,
                graph,
                clock: Clock::start(),
                plans,
                flow_run,
                span,
                task_handlers: (!options.task_handlers.is_empty())
                    .then(|| Arc::new(options.task_handlers.clone())),
                options,
            },
            st: RunState {
                nodes,
                params,
                ready: BinaryHeap::new(),
                newly_ready: Vec::new(),
                in_flight: 0,
                pooled: 0,
                fast_runs: vec![0; task_count],
                task_of,
                tag_slots: tag_limits.iter().map(|(_, limit)| (*limit, 0)).collect(),
                limited_tags,
                tag_waiting: VecDeque::new(),
                inline_under,
                max_concurrency,
                pool: Pool::new(sync_threads),
                local: FuturesUnordered::new(),
                deadlines: HashMap::new(),
                abandoned: HashSet::new(),
                tasks: JoinSet::new(),
                tx,
                rx,
            },
        }
    }

    async fn run(mut self) -> RunRecord {
        let started_at = SystemTime::now();
        tracing::info!(target: "tideflow", "flow run started");
        let (s, st) = (&self.s, &mut self.st);
        s.notify_flow(State::Pending, &State::Running, Vec::new());
        st.newly_ready
            .extend((0..s.plans.len()).rev().filter(|&x| s.plans[x].waits == 0));
        let mut lost = false;
        loop {
            st.pump(s);
            if st.in_flight == 0 {
                break;
            }
            match st.next_event().await {
                Event::Completion(c) => st.complete(s, c),
                Event::RetryDue(mut job) => {
                    job.ctx.attempt += 1;
                    job.ctx.scheduled_start = s.clock.system_time(std::time::Instant::now());
                    st.launch(s, *job);
                }
                Event::Deadline(job) => st.deadline(s, *job),
                Event::Nothing => {}
                Event::Lost => {
                    tracing::error!("the engine lost track of {} running task run(s)", st.in_flight);
                    lost = true;
                    break;
                }
            }
            while let Ok(c) = st.rx.try_recv() {
                st.complete(s, c);
            }
        }
        if !lost && st.abandoned.is_empty() {
            // Only idle pool workers remain; they exit at once.
            while st.tasks.join_next().await.is_some() {}
        } else {
            // A sync attempt that ran past its timeout cannot be stopped: the run does not
            // wait for it (its result is discarded).
            st.tasks.detach_all();
        }
        self.finish(started_at)
    }

    /// Builds the run record: final flow state, output, and one task run per node.
    fn finish(mut self, started_at: SystemTime) -> RunRecord {
        let (s, st) = (&self.s, &mut self.st);
        let now = SystemTime::now();
        // Task runs that never ended (a cycle in a hand-built graph, or a lost task run)
        // fail the flow whatever its reference tasks.
        let mut incomplete = false;
        let mut never_ran = Vec::new();
        for (x, node) in st.nodes.iter_mut().enumerate() {
            const NEVER: &str = "never ran: the flow run ended before its upstream tasks were final";
            if !node.finished && !node.expanded {
                incomplete = true;
                let old = std::mem::replace(&mut node.state, State::Pending);
                node.state = State::Failed {
                    message: NEVER.to_owned(),
                };
                node.ended_at = Some(now);
                never_ran.push((UpId::own(x), old));
            }
            for (i, c) in node.children.iter_mut().enumerate() {
                if !c.state.is_finished() {
                    incomplete = true;
                    never_ran.push((UpId::child(x, i), c.state.clone()));
                    c.state = State::Failed {
                        message: NEVER.to_owned(),
                    };
                    c.ended_at = Some(now);
                }
            }
        }

        if s.task_handlers.is_some() {
            for (u, old) in never_ran {
                s.notify_task(u, old, st.state_of(u));
            }
        }

        let is_failed = |n: &NodeRun| n.state.is_failed() || n.children.iter().any(|c| c.state.is_failed());
        let reference: Vec<usize> = match &s.options.reference {
            Some(ids) => ids.iter().map(|id| id.index()).collect(),
            None => (0..s.plans.len()).filter(|&x| s.plans[x].terminal).collect(),
        };
        let failed = incomplete || reference.iter().any(|&x| st.nodes.get(x).is_some_and(is_failed));
        let state = if failed {
            State::Failed {
                message: failure_message(s, &st.nodes),
            }
        } else {
            State::Success
        };
        let output = match (&s.graph.output, failed) {
            (Some(src), false) => st.eval(s, src, false).ok(),
            _ => None,
        };
        match &state {
            State::Failed { message } => {
                tracing::error!(target: "tideflow", error = %message, "flow run Failed")
            }
            _ => tracing::info!(target: "tideflow", "flow run Success"),
        }
        if !s.options.flow_handlers.is_empty() {
            s.notify_flow(State::Running, &state, failed_task_runs(s, &st.nodes));
        }

        let nodes = std::mem::take(&mut st.nodes);
        let tasks = nodes
            .into_iter()
            .enumerate()
            .map(|(x, n)| {
                let plan = &s.plans[x];
                let task_name = s.graph.nodes[x].task.name;
                let keep = plan.keep;
                // The children's records become the run's as they are: no copy of a
                // million-child map at the end of the run.
                let mut children = n.children;
                if !keep {
                    for c in &mut children {
                        c.result = None;
                    }
                }
                TaskRun {
                    name: Arc::clone(&plan.name),
                    task_name,
                    state: n.state,
                    attempts: n.attempts,
                    started_at: n.started_at,
                    ended_at: n.ended_at,
                    result: if keep { n.result } else { None },
                    children,
                    subflows: n.subflows,
                }
            })
            .collect();
        RunRecord {
            warnings: s
                .run_store
                .as_ref()
                .map(|r| r.take_warnings())
                .unwrap_or_default(),
            id: s.flow_run,
            parent: s.options.parent,
            flow: s.graph.name,
            state,
            tasks,
            output,
            started_at,
            ended_at: SystemTime::now(),
        }
    }
}

/// How each node stores its results: persisted (its `persist` option, else the flow's
/// switch) and cached (`cache_for`/`cache_key`), when its task has a codec. Writes the run's
/// record when any node persists, so the run can be restarted.
fn node_stores(
    graph: &Graph,
    options: &RunOptions,
    run: FlowRunId,
    plans: &[NodePlan],
    params: &serde_json::Map<String, serde_json::Value>,
) -> (Vec<Option<Arc<NodeStore>>>, Option<Arc<RunStore>>) {
    let persists = |n: &crate::graph::Node| n.options.persist.unwrap_or(options.persist_all);
    // A restarted run looks for every task's persisted result, whatever its options now.
    let restore = options.restart.is_some();
    let wanted =
        |n: &crate::graph::Node| n.task.codec.is_some() && (restore || persists(n) || n.options.is_cached());
    if !graph.nodes.iter().any(wanted) {
        return (vec![None; graph.nodes.len()], None);
    }
    let store = options
        .store
        .clone()
        .unwrap_or_else(ResultStore::default_location);
    let run_store = Arc::new(RunStore::new(store.clone(), run));
    if graph.nodes.iter().any(|n| n.task.codec.is_some() && persists(n)) {
        let manifest = RunManifest {
            flow: graph.name.to_owned(),
            params: params.clone(),
        };
        if let Err(e) = store.write_run(run, &manifest) {
            run_store.warn(format!(
                "the record of this run cannot be written in {}: {e}; the run cannot be restarted",
                store.path().display()
            ));
        }
    }
    let stores = graph
        .nodes
        .iter()
        .zip(plans)
        .map(|(n, plan)| {
            let codec = n.task.codec.filter(|_| wanted(n))?;
            let cached = n.options.is_cached();
            Some(Arc::new(NodeStore {
                run: Arc::clone(&run_store),
                codec,
                stem: NodeStore::persist_stem(&run_store, &plan.name),
                persist: persists(n),
                restore,
                cache_name: cached.then(|| n.options.cache_key.unwrap_or(n.task.key)),
                cache_for: n.options.cache_for,
            }))
        })
        .collect();
    (stores, Some(run_store))
}

/// The full names of the failed task runs (mapped children included), in graph order.
fn failed_task_runs(s: &Static, nodes: &[NodeRun]) -> Vec<String> {
    let mut names = Vec::new();
    for (x, n) in nodes.iter().enumerate() {
        if n.state.is_failed() {
            names.push(s.name(UpId::own(x)).to_string());
        }
        for (i, c) in n.children.iter().enumerate() {
            if c.state.is_failed() {
                names.push(s.name(UpId::child(x, i)).to_string());
            }
        }
    }
    names
}

/// "failed task runs: `t1` (Failed: boom), `t2` (TriggerFailed)".
fn failure_message(s: &Static, nodes: &[NodeRun]) -> String {
    let mut list = String::new();
    let mut count = 0usize;
    let mut note = |u: UpId, state: &State| {
        if count < LISTED {
            if count > 0 {
                list.push_str(", ");
            }
            let _ = match state {
                State::Failed { message } => write!(list, "`{}` (Failed: {message})", s.name(u)),
                other => write!(list, "`{}` ({})", s.name(u), other.name()),
            };
        }
        count += 1;
    };
    for (x, n) in nodes.iter().enumerate() {
        if n.state.is_failed() {
            note(UpId::own(x), &n.state);
        }
        for (i, c) in n.children.iter().enumerate() {
            if c.state.is_failed() {
                note(UpId::child(x, i), &c.state);
            }
        }
    }
    if count > LISTED {
        let _ = write!(list, " and {} more", count - LISTED);
    }
    format!("failed task runs: {list}")
}

/// Takes one read of a result: moved out on the last read (unless kept), cloned otherwise.
fn take_use(slot: &mut Option<Value>, uses: &mut u32, keep: bool) -> Option<Value> {
    *uses = uses.saturating_sub(1);
    if *uses == 0 && !keep {
        slot.take()
    } else {
        slot.clone()
    }
}

/// Gives up one read of a result without reading it.
fn drop_use(slot: &mut Option<Value>, uses: &mut u32, keep: bool) {
    *uses = uses.saturating_sub(1);
    if *uses == 0 && !keep {
        *slot = None;
    }
}

/// The states of some upstream references, a mapped task's reference flattened into its
/// children (or its own state when it did not expand).
struct RefStates<'a> {
    nodes: &'a [NodeRun],
    refs: slice::Iter<'a, UpRef>,
    children: Option<(usize, std::iter::Enumerate<slice::Iter<'a, ChildRun>>)>,
}

impl<'a> Iterator for RefStates<'a> {
    type Item = (UpId, &'a State);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((m, it)) = &mut self.children {
                if let Some((i, c)) = it.next() {
                    return Some((UpId::child(*m, i), &c.state));
                }
                self.children = None;
            }
            match *self.refs.next()? {
                UpRef::Own(id) => {
                    let x = id.index();
                    return Some((UpId::own(x), &self.nodes[x].state));
                }
                UpRef::Children(id) => {
                    let m = id.index();
                    let node = &self.nodes[m];
                    if node.expanded {
                        self.children = Some((m, node.children.iter().enumerate()));
                    } else {
                        return Some((UpId::own(m), &node.state));
                    }
                }
            }
        }
    }
}

impl RunState {
    fn ref_states<'a>(&'a self, refs: &'a [UpRef]) -> RefStates<'a> {
        RefStates {
            nodes: &self.nodes,
            refs: refs.iter(),
            children: None,
        }
    }

    fn state_of(&self, u: UpId) -> &State {
        let node = &self.nodes[u.node];
        match u.index {
            Some(i) => &node.children[i as usize].state,
            None => &node.state,
        }
    }

    /// `Skipped` when node `x` is in a branch of an `if` that was not taken (one of its
    /// gates skipped), whatever its trigger options.
    fn untaken_branch(&self, s: &Static, x: usize) -> Option<State> {
        let gate = *s.plans[x]
            .gates
            .iter()
            .find(|&&g| self.nodes[g].state.is_skipped())?;
        Some(skipped_by(s, UpId::own(gate)))
    }

    /// Starts ready work until the concurrency limit is reached or nothing is ready.
    fn pump(&mut self, s: &Static) {
        loop {
            while let Some(y) = self.newly_ready.pop() {
                if s.graph.nodes[y].mapped {
                    self.expand(s, y);
                } else {
                    self.push_ready(y, 0, 1);
                }
            }
            if self.in_flight >= self.max_concurrency {
                break;
            }
            let Some(top) = self.ready.peek_mut() else {
                break;
            };
            let x = top.node.0 as usize;
            let i = top.start.0;
            if i + 1 < top.end {
                let mut top = top;
                top.start = Reverse(i + 1);
            } else {
                PeekMut::pop(top);
            }
            if s.graph.nodes[x].mapped {
                self.start_child(s, x, i as usize);
            } else {
                self.start_node(s, x);
            }
        }
    }

    fn push_ready(&mut self, x: usize, start: usize, end: usize) {
        self.ready.push(Ready {
            node: Reverse(x as u32),
            start: Reverse(start as u32),
            end: end as u32,
        });
    }

    async fn next_event(&mut self) -> Event {
        if self.tasks.is_empty() && self.local.is_empty() {
            // No task and no pool worker left: every completion is already in the channel.
            return match self.rx.try_recv() {
                Ok(c) => Event::Completion(c),
                Err(_) => Event::Lost,
            };
        }
        tokio::select! {
            biased;
            Some(c) = self.rx.recv() => Event::Completion(c),
            Some(done) = self.local.next() => done.into(),
            Some(joined) = self.tasks.join_next() => match joined {
                Ok(done) => done.into(),
                Err(e) if e.is_cancelled() => Event::Nothing,
                Err(e) => {
                    tracing::error!(error = %e, "an engine task ended abnormally");
                    Event::Nothing
                }
            },
            else => Event::Lost,
        }
    }

    /// A non-mapped task run is ready: check it, then run it.
    fn start_node(&mut self, s: &Static, x: usize) {
        let node = &s.graph.nodes[x];
        let plan = &s.plans[x];
        let options = &node.options;
        if let Some(message) = &plan.invalid {
            self.release_sources(s, x);
            let state = State::Failed {
                message: message.clone(),
            };
            return self.resolve_node(s, x, state);
        }
        if options.skip_on_upstream_skip {
            if let Some((u, _)) = self.ref_states(&plan.refs).find(|(_, st)| st.is_skipped()) {
                self.release_sources(s, x);
                let state = skipped_by(s, u);
                return self.resolve_node(s, x, state);
            }
        }
        if let Some(state) = self.untaken_branch(s, x) {
            self.release_sources(s, x);
            return self.resolve_node(s, x, state);
        }
        if !options
            .trigger
            .passes(self.ref_states(&plan.refs).map(|(_, st)| st))
        {
            self.release_sources(s, x);
            let state = State::TriggerFailed {
                message: trigger_message(s, options.trigger, self.ref_states(&plan.refs)),
            };
            return self.resolve_node(s, x, state);
        }
        let mut inputs = Vec::with_capacity(node.inputs.len());
        let mut missing = None;
        for (i, input) in node.inputs.iter().enumerate() {
            // A non-mapped task has only whole inputs (anything else makes it invalid).
            if let Input::Value(src) = input {
                match self.eval(s, src, true) {
                    Ok(v) => inputs.push(v),
                    Err(m) => {
                        missing.get_or_insert((i, m));
                    }
                }
            }
        }
        if let Some((i, m)) = missing {
            drop(inputs);
            let state = self.missing_state(s, x, i, m);
            return self.resolve_node(s, x, state);
        }
        self.dispatch(s, x, None, inputs);
    }

    /// A mapped task's upstream tasks are final (zipped ones expanded): check it as a
    /// whole, then create its children.
    fn expand(&mut self, s: &Static, x: usize) {
        let node = &s.graph.nodes[x];
        let plan = &s.plans[x];
        let options = &node.options;
        if let Some(message) = &plan.invalid {
            let state = State::Failed {
                message: message.clone(),
            };
            return self.abort_map(s, x, state, false);
        }
        // The states every child shares: non-zipped upstreams, and zipped ones that did
        // not expand (then the task cannot expand either).
        let unexpanded_zips = || {
            plan.zips
                .iter()
                .map(|z| z.index())
                .filter(|&z| !self.nodes[z].expanded)
                .map(|z| (UpId::own(z), &self.nodes[z].state))
        };
        let shared = || self.ref_states(&plan.refs).chain(unexpanded_zips());
        if options.skip_on_upstream_skip {
            if let Some((u, _)) = shared().find(|(_, st)| st.is_skipped()) {
                let state = skipped_by(s, u);
                return self.abort_map(s, x, state, false);
            }
        }
        if let Some(state) = self.untaken_branch(s, x) {
            return self.abort_map(s, x, state, false);
        }
        // With children zipped over, only an "all" trigger is decided by the shared states.
        let zipped = plan.zips.iter().any(|z| self.nodes[z.index()].expanded);
        let decided = !zipped || matches!(options.trigger, Trigger::AllSuccessful | Trigger::AllFailed);
        if decided && !options.trigger.passes(shared().map(|(_, st)| st)) {
            let state = State::TriggerFailed {
                message: trigger_message(s, options.trigger, shared()),
            };
            return self.abort_map(s, x, state, false);
        }

        let mut slots = Vec::with_capacity(node.inputs.len());
        let mut lens: Vec<(usize, usize)> = Vec::new();
        let mut missing = None;
        for (i, input) in node.inputs.iter().enumerate() {
            let slot = match input {
                Input::Value(src) => match self.eval(s, src, true) {
                    Ok(v) => Slot::Broadcast(Some(v)),
                    Err(m) => {
                        if plan.zips.is_empty() {
                            missing.get_or_insert((i, m));
                        }
                        Slot::Missing(m)
                    }
                },
                Input::FanOut(src, split) => match self.eval(s, src, true) {
                    Ok(v) => {
                        let elements = split(v);
                        lens.push((i, elements.len()));
                        Slot::Elements(elements.into_iter().map(Some).collect())
                    }
                    Err(m) => {
                        missing.get_or_insert((i, m));
                        Slot::Missing(m)
                    }
                },
                Input::Zip(m) => {
                    let m = m.index();
                    if self.nodes[m].expanded {
                        lens.push((i, self.nodes[m].children.len()));
                    } else {
                        missing.get_or_insert((i, Missing::Up(UpId::own(m))));
                    }
                    Slot::Zip(m)
                }
            };
            slots.push(slot);
        }
        if let Some((i, m)) = missing {
            drop(slots);
            let state = self.missing_state(s, x, i, m);
            return self.abort_map(s, x, state, true);
        }
        let n = lens.first().map_or(0, |l| l.1);
        if lens.iter().any(|l| l.1 != n) {
            drop(slots);
            let mut message = "cannot zip mapped inputs of unequal lengths: ".to_owned();
            for (k, (i, len)) in lens.iter().enumerate() {
                let sep = if k == 0 { "" } else { ", " };
                let unit = if k == 0 { " elements" } else { "" };
                let _ = write!(message, "{sep}`{}` has {len}{unit}", mapped_over(s, x, *i));
            }
            return self.abort_map(s, x, State::Failed { message }, true);
        }

        let mut level = Level::default();
        for (u, st) in self.ref_states(&plan.refs) {
            if st.is_skipped() {
                level.skipped.get_or_insert(u);
            }
            if st.is_successful() {
                level.successful.get_or_insert(u);
            }
            if st.is_failed() {
                level.failed.get_or_insert(u);
            }
        }
        let children: Vec<ChildRun> = (0..n)
            .map(|i| ChildRun {
                state: State::Pending,
                attempts: 0,
                index: i as u32,
                started_at: None,
                ended_at: None,
                result: None,
                uses: plan.child_uses,
                zip_wait: plan
                    .zips
                    .iter()
                    .filter(|z| !self.nodes[z.index()].children[i].state.is_finished())
                    .count() as u32,
            })
            .collect();
        let mut runs = Vec::new();
        let mut i = 0;
        while i < n {
            if children[i].zip_wait == 0 {
                let start = i;
                while i < n && children[i].zip_wait == 0 {
                    i += 1;
                }
                runs.push((start, i));
            } else {
                i += 1;
            }
        }
        let now = SystemTime::now();
        let rt = &mut self.nodes[x];
        rt.expanded = true;
        rt.state = State::Mapped { children: n };
        rt.started_at = Some(now);
        rt.children = children;
        rt.unstarted = n;
        rt.slots = slots;
        rt.level = level;
        tracing::info!(target: "tideflow", task = %s.plans[x].name, children = n, "Mapped");
        if s.task_handlers.is_some() {
            s.notify_task(UpId::own(x), State::Pending, &self.nodes[x].state);
        }
        for &y in &plan.zip_consumers {
            self.dec_wait(y.index());
        }
        for (start, end) in runs {
            self.push_ready(x, start, end);
        }
        if n == 0 {
            self.end_map(s, x);
        }
    }

    /// Child `i` of mapped task `x` is ready: check it, then run it.
    fn start_child(&mut self, s: &Static, x: usize, i: usize) {
        let node = &s.graph.nodes[x];
        let plan = &s.plans[x];
        let options = &node.options;
        let rt = &mut self.nodes[x];
        rt.unstarted -= 1;
        let last = rt.unstarted == 0;

        // Gather the inputs first: this also gives up the child's reads of values it
        // will not use when it does not run.
        let mut inputs = Vec::with_capacity(rt.slots.len());
        let mut missing = None;
        for k in 0..node.inputs.len() {
            let got = match &mut self.nodes[x].slots[k] {
                Slot::Broadcast(v) => {
                    if last {
                        v.take()
                    } else {
                        v.clone()
                    }
                }
                Slot::Missing(m) => {
                    missing.get_or_insert((k, *m));
                    continue;
                }
                Slot::Elements(elements) => elements.get_mut(i).and_then(Option::take),
                Slot::Zip(m) => {
                    let m = *m;
                    let keep = s.plans[m].keep;
                    let c = &mut self.nodes[m].children[i];
                    match take_use(&mut c.result, &mut c.uses, keep) {
                        Some(v) => Some(v),
                        None => {
                            missing.get_or_insert((k, Missing::Up(UpId::child(m, i))));
                            continue;
                        }
                    }
                }
            };
            match got {
                Some(v) => inputs.push(v),
                None => {
                    missing.get_or_insert((k, Missing::Released));
                }
            }
        }

        let nodes = &self.nodes;
        let zip_states = || {
            plan.zips
                .iter()
                .map(move |z| (UpId::child(z.index(), i), &nodes[z.index()].children[i].state))
        };
        let level = self.nodes[x].level;
        let verdict = 'check: {
            if options.skip_on_upstream_skip {
                let skipped = level
                    .skipped
                    .or_else(|| zip_states().find(|(_, st)| st.is_skipped()).map(|(u, _)| u));
                if let Some(u) = skipped {
                    break 'check Some(skipped_by(s, u));
                }
            }
            let shared = [level.successful, level.failed]
                .into_iter()
                .flatten()
                .map(|u| self.state_of(u));
            if !options
                .trigger
                .passes(shared.chain(zip_states().map(|(_, st)| st)))
            {
                let ups = self.ref_states(&plan.refs).chain(zip_states());
                break 'check Some(State::TriggerFailed {
                    message: trigger_message(s, options.trigger, ups),
                });
            }
            missing.map(|(k, m)| self.missing_state(s, x, k, m))
        };
        if let Some(state) = verdict {
            drop(inputs);
            self.log_resolution(s, UpId::child(x, i), &state);
            if s.task_handlers.is_some() {
                s.notify_task(UpId::child(x, i), State::Pending, &state);
            }
            let end = ChildEnd {
                state,
                result: None,
                attempts: 0,
                started_at: None,
                ended_at: SystemTime::now(),
            };
            return self.end_child(s, x, i, end);
        }
        self.dispatch(s, x, Some(i as u32), inputs);
    }

    /// Hands a task run to the executor.
    fn dispatch(&mut self, s: &Static, x: usize, index: Option<u32>, inputs: Vec<Value>) {
        let def = s.graph.nodes[x].task;
        let job = Job {
            node: x,
            index,
            def,
            options: (&s.graph.nodes[x].options).into(),
            inputs,
            ctx: TaskContext {
                id: TaskRunId {
                    flow_run: s.flow_run,
                    node: x as u32,
                    map_index: index,
                },
                flow_name: s.graph.name,
                task_name: def.name,
                binding: Arc::clone(&s.plans[x].name),
                attempt: 1,
                scheduled_start: s.clock.system_time(std::time::Instant::now()),
                params: Arc::clone(&s.params_json),
                inherited: s.subflow_options.as_ref().filter(|_| def.is_subflow()).cloned(),
            },
            started_at: None,
            clock: s.clock,
            parent: s.span.clone(),
            handlers: s.task_handlers.clone(),
            retry_at: None,
            claim: None,
            store: s.stores[x].clone(),
            cache_key: None,
        };
        self.in_flight += 1;
        self.launch(s, job);
    }

    /// Starts an attempt: a sync body the engine has seen to be fast runs right here when
    /// the pool is idle (see [`INLINE_AFTER`]); everything else goes to the executor.
    fn launch(&mut self, s: &Static, mut job: Job) {
        let tags = &self.limited_tags[job.node];
        if !tags.is_empty() {
            // Wait, behind the runs that waited first, while a tag has no free slot.
            if tags.iter().any(|&t| {
                let (limit, held) = self.tag_slots[t as usize];
                held >= limit
            }) {
                self.tag_waiting.push_back(job);
                return;
            }
            for &t in tags {
                self.tag_slots[t as usize].1 += 1;
            }
        }
        match job.def.body {
            TaskBody::Sync(body) => {
                let timeout = job.options.timeout;
                // An attempt with a timeout always goes to the pool: the scheduler must
                // stay free to end it at its deadline.
                // Nor does a run of a task with a limited tag: slots are handed on from
                // `complete`, which an inline run would re-enter.
                // Nor one that reads or writes the result store.
                if timeout.is_none()
                    && job.store.is_none()
                    && self.limited_tags[job.node].is_empty()
                    && self.pooled == 0
                    && self.fast_runs[self.task_of[job.node] as usize] >= INLINE_AFTER
                {
                    let c = exec::run_sync(job, body);
                    return self.complete(s, c);
                }
                if let Some(limit) = timeout {
                    // A fresh claim for each attempt (see `Job::claim`).
                    job.claim = job
                        .handlers
                        .is_some()
                        .then(|| Arc::new(std::sync::atomic::AtomicBool::new(false)));
                    let copy = Box::new(job.retry_copy());
                    let key = (job.node, job.index);
                    let timer = self.tasks.spawn(async move {
                        tokio::time::sleep(limit).await;
                        Done::Deadline(copy)
                    });
                    self.deadlines.insert(key, timer);
                }
                self.pooled += 1;
                self.pool.launch(job, body, &mut self.tasks, &self.tx);
            }
            // Polled by the scheduler's own task: no spawn, no cross-thread wake-up per
            // task run. An async task must not block; CPU work belongs in a sync task.
            TaskBody::Async(body) if job.store.is_some() => {
                self.local.push(Box::pin(exec::run_async_stored(job, body)));
            }
            TaskBody::Async(body) => self.local.push(Box::pin(exec::run_async(job, body))),
            TaskBody::Subflow(body) => self.local.push(Box::pin(exec::run_subflow(job, body))),
        }
    }

    /// A task run ended (or a sync attempt is to be retried).
    fn complete(&mut self, s: &Static, c: Completion) {
        if c.pooled {
            self.pooled -= 1;
            if self.abandoned.remove(&(c.node, c.index, c.attempts)) {
                tracing::debug!(
                    target: "tideflow",
                    task = %s.name(UpId { node: c.node, index: c.index }),
                    attempt = c.attempts,
                    "a timed-out attempt finished late; its result is discarded"
                );
                return;
            }
            if let Some(timer) = self.deadlines.remove(&(c.node, c.index)) {
                timer.abort();
            }
        }
        self.release_tags(s, c.node);
        if let Some(busy) = c.busy {
            let fast = &mut self.fast_runs[self.task_of[c.node] as usize];
            *fast = if busy <= self.inline_under && !self.inline_under.is_zero() {
                fast.saturating_add(1)
            } else {
                0
            };
        }
        let state = match c.outcome {
            Outcome::Retry(job, wait) => {
                self.tasks.spawn(async move {
                    tokio::time::sleep(wait).await;
                    Done::RetryDue(job)
                });
                return;
            }
            Outcome::TimedOut(message) => (State::TimedOut { message }, None),
            Outcome::Success(v) => (State::Success, Some(v)),
            Outcome::Cached(v) => (State::Cached, Some(v)),
            Outcome::Failed(message) => (State::Failed { message }, None),
            Outcome::Skipped(message) => (State::Skipped { message }, None),
        };
        self.in_flight -= 1;
        if let Some(run) = c.subflow {
            self.nodes[c.node].subflows.push((c.index, run));
        }
        let (state, result) = state;
        match c.index {
            None => {
                let keep = s.plans[c.node].keep;
                let rt = &mut self.nodes[c.node];
                rt.attempts = c.attempts;
                rt.started_at = c.started_at;
                rt.result = result.filter(|_| keep || rt.uses > 0);
                self.end_node(s, c.node, state, Some(c.ended_at));
            }
            Some(i) => {
                let end = ChildEnd {
                    state,
                    result,
                    attempts: c.attempts,
                    started_at: c.started_at,
                    ended_at: c.ended_at,
                };
                self.end_child(s, c.node, i as usize, end);
            }
        }
    }

    /// An attempt of node `x` settled: its tag slots go to the runs waiting for them.
    fn release_tags(&mut self, s: &Static, x: usize) {
        if self.limited_tags[x].is_empty() {
            return;
        }
        for &t in &self.limited_tags[x] {
            self.tag_slots[t as usize].1 -= 1;
        }
        // Start the waiting runs that now fit, oldest first.
        let waiting = std::mem::take(&mut self.tag_waiting);
        for job in waiting {
            self.launch(s, job);
        }
    }

    /// A sync attempt ran past its timeout: it is abandoned (its late result will be
    /// discarded) and ends `TimedOut`, or is retried from the copy the timer kept.
    fn deadline(&mut self, s: &Static, mut job: Job) {
        let key = (job.node, job.index);
        if self.deadlines.remove(&key).is_none() {
            return; // The attempt finished just before its deadline.
        }
        if let Some(claim) = job.claim.take() {
            if claim.swap(true, std::sync::atomic::Ordering::SeqCst) {
                // The attempt ended (and told the state handlers) just before its
                // deadline: its completion is on its way and stands.
                return;
            }
        }
        self.abandoned.insert((job.node, job.index, job.ctx.attempt));
        let limit = job.options.timeout.unwrap_or_default();
        let span = exec::task_span(&job);
        let now = std::time::Instant::now();
        let c = span.in_scope(|| job.finish(exec::Attempt::TimedOut(limit), now));
        self.complete(s, c);
    }

    /// A non-mapped task ends without running.
    fn resolve_node(&mut self, s: &Static, x: usize, state: State) {
        self.log_resolution(s, UpId::own(x), &state);
        if s.task_handlers.is_some() {
            s.notify_task(UpId::own(x), State::Pending, &state);
        }
        self.end_node(s, x, state, None);
    }

    fn end_node(&mut self, s: &Static, x: usize, state: State, ended_at: Option<SystemTime>) {
        let rt = &mut self.nodes[x];
        rt.state = state;
        rt.finished = true;
        rt.ended_at = Some(ended_at.unwrap_or_else(SystemTime::now));
        self.node_final(s, x);
    }

    fn end_child(&mut self, s: &Static, x: usize, i: usize, end: ChildEnd) {
        let keep = s.plans[x].keep;
        let rt = &mut self.nodes[x];
        let c = &mut rt.children[i];
        c.state = end.state;
        c.attempts = end.attempts;
        c.started_at = end.started_at;
        c.ended_at = Some(end.ended_at);
        c.result = end.result.filter(|_| keep || c.uses > 0);
        rt.done += 1;
        let all_done = rt.done == rt.children.len();
        for &y in &s.plans[x].zip_consumers {
            let y = y.index();
            let ready = match self.nodes[y].children.get_mut(i) {
                Some(c) if c.zip_wait > 0 => {
                    c.zip_wait -= 1;
                    c.zip_wait == 0
                }
                _ => false,
            };
            if ready {
                self.push_ready(y, i, i + 1);
            }
        }
        if all_done {
            self.end_map(s, x);
        }
    }

    /// Every child of an expanded mapped task is final.
    fn end_map(&mut self, s: &Static, x: usize) {
        let rt = &mut self.nodes[x];
        rt.finished = true;
        rt.ended_at = Some(SystemTime::now());
        rt.slots = Vec::new();
        if tracing::enabled!(tracing::Level::INFO) {
            let failed = rt.children.iter().filter(|c| c.state.is_failed()).count();
            tracing::info!(
                target: "tideflow",
                task = %s.plans[x].name,
                children = rt.children.len(),
                failed,
                "all children finished"
            );
        }
        self.node_final(s, x);
    }

    /// A mapped task ends as a whole, without children.
    fn abort_map(&mut self, s: &Static, x: usize, state: State, sources_read: bool) {
        if !sources_read {
            self.release_sources(s, x);
        }
        for input in &s.graph.nodes[x].inputs {
            if let Input::Zip(m) = input {
                let (Some(plan), Some(rt)) = (s.plans.get(m.index()), self.nodes.get_mut(m.index())) else {
                    continue;
                };
                for c in &mut rt.children {
                    drop_use(&mut c.result, &mut c.uses, plan.keep);
                }
            }
        }
        self.resolve_node(s, x, state);
    }

    /// Node `x` is final: notify what waits for it.
    fn node_final(&mut self, s: &Static, x: usize) {
        let plan = &s.plans[x];
        for &y in &plan.notify_final {
            self.dec_wait(y.index());
        }
        if !self.nodes[x].expanded {
            // Tasks zipping over a mapped task that did not expand end too.
            for &y in &plan.zip_consumers {
                self.dec_wait(y.index());
            }
        }
    }

    fn dec_wait(&mut self, y: usize) {
        let rt = &mut self.nodes[y];
        rt.waits = rt.waits.saturating_sub(1);
        if rt.waits == 0 {
            self.newly_ready.push(y);
        }
    }

    /// Reads a value source. With `consume`, the read counts as one of the upstream's
    /// consumers (the last one moves the value out).
    fn eval(&mut self, s: &Static, src: &Source, consume: bool) -> Result<Value, Missing> {
        match src {
            Source::Param(i) => self.params.get(*i).cloned().ok_or(Missing::Unknown),
            Source::Const(v, _) => Ok(Arc::clone(v)),
            Source::Node(_) | Source::Reduce(..) => match plan::classify(&s.graph, src) {
                None => Err(Missing::Unknown),
                Some(UpRef::Own(id)) => {
                    let n = id.index();
                    let keep = s.plans[n].keep;
                    let rt = &mut self.nodes[n];
                    let v = if consume {
                        take_use(&mut rt.result, &mut rt.uses, keep)
                    } else {
                        rt.result.clone()
                    };
                    v.ok_or(Missing::Up(UpId::own(n)))
                }
                Some(UpRef::Children(id)) => {
                    let m = id.index();
                    let keep = s.plans[m].keep;
                    let rt = &mut self.nodes[m];
                    if !rt.expanded {
                        return Err(Missing::Up(UpId::own(m)));
                    }
                    let values = rt
                        .children
                        .iter_mut()
                        .filter_map(|c| {
                            if consume {
                                take_use(&mut c.result, &mut c.uses, keep)
                            } else {
                                c.result.clone()
                            }
                        })
                        .collect();
                    match src {
                        Source::Reduce(_, collect) => Ok(collect(values)),
                        _ => Err(Missing::Unknown),
                    }
                }
            },
            Source::Gather(parts, collect) => {
                let mut values = Vec::with_capacity(parts.len());
                let mut missing = None;
                for part in parts {
                    match self.eval(s, part, consume) {
                        Ok(v) => values.push(v),
                        Err(m) => {
                            missing.get_or_insert(m);
                        }
                    }
                }
                match missing {
                    Some(m) => Err(m),
                    None => Ok(collect(values)),
                }
            }
            Source::First(parts) => {
                // Every part is read, so each counts as one of its upstream's consumers;
                // the first part with a value is the branch that ran.
                let mut found = None;
                let mut missing: Option<Missing> = None;
                for part in parts {
                    match self.eval(s, part, consume) {
                        Ok(v) => {
                            found.get_or_insert(v);
                        }
                        Err(m) => {
                            if missing.is_none_or(|old| self.why_rank(s, m) < self.why_rank(s, old)) {
                                missing = Some(m);
                            }
                        }
                    }
                }
                match found {
                    Some(v) => Ok(v),
                    None => Err(missing.unwrap_or(Missing::Unknown)),
                }
            }
        }
    }

    /// How well a missing branch value explains a merge without a value, best first: a
    /// branch that ran and failed, then a skip inside a branch that ran, then a branch
    /// that was not taken (its gate skipped).
    fn why_rank(&self, s: &Static, missing: Missing) -> u8 {
        match missing {
            Missing::Up(u) if self.state_of(u).is_skipped() => {
                if crate::branch::is_gate(s.graph.nodes[u.node].task) {
                    2
                } else {
                    1
                }
            }
            _ => 0,
        }
    }

    /// Gives up the reads node `x`'s whole inputs (`Value` and `FanOut`) would have made.
    fn release_sources(&mut self, s: &Static, x: usize) {
        for input in &s.graph.nodes[x].inputs {
            let (Input::Value(src) | Input::FanOut(src, _)) = input else {
                continue;
            };
            plan::visit(src, &mut |part| match plan::classify(&s.graph, part) {
                Some(UpRef::Own(id)) => {
                    let n = id.index();
                    let rt = &mut self.nodes[n];
                    drop_use(&mut rt.result, &mut rt.uses, s.plans[n].keep);
                }
                Some(UpRef::Children(id)) => {
                    let m = id.index();
                    let keep = s.plans[m].keep;
                    for c in &mut self.nodes[m].children {
                        drop_use(&mut c.result, &mut c.uses, keep);
                    }
                }
                None => {}
            });
        }
    }

    /// The state of a task run whose input `i` has no value.
    fn missing_state(&self, s: &Static, x: usize, i: usize, missing: Missing) -> State {
        let input = param_name(s, x, i);
        match missing {
            Missing::Up(u) => {
                let state = self.state_of(u);
                let message = if crate::branch::is_merge(s.graph.nodes[x].task) {
                    let what = if crate::branch::is_gate(s.graph.nodes[u.node].task) {
                        "no branch of the `if` ran"
                    } else if state.is_skipped() {
                        "no branch of the `if` gave a value"
                    } else {
                        "the branch of the `if` that ran gave no value"
                    };
                    format!("{what}: `{}` ended {}", s.name(u), state.name())
                } else {
                    format!(
                        "input `{input}` has no value because `{}` ended {}; a task that must run after \
                         a failure or skip should depend on it with an ordering-only dependency \
                         (`.after(..)`) instead of taking its result",
                        s.name(u),
                        state.name(),
                    )
                };
                if state.is_skipped() {
                    State::Skipped { message }
                } else {
                    State::TriggerFailed { message }
                }
            }
            Missing::Unknown => State::Failed {
                message: format!("input `{input}` reads a parameter or task the flow does not have"),
            },
            Missing::Released => State::Failed {
                message: format!("input `{input}` was released before this task run read it (engine bug)"),
            },
        }
    }

    /// Logs a state the scheduler decided (the task body did not run).
    fn log_resolution(&self, s: &Static, u: UpId, state: &State) {
        let task = s.name(u);
        match state {
            State::Failed { message } => {
                tracing::error!(target: "tideflow", task = %task, error = %message, "Failed")
            }
            State::TriggerFailed { message } => {
                tracing::warn!(target: "tideflow", task = %task, reason = %message, "TriggerFailed")
            }
            State::Skipped { message } => {
                tracing::info!(target: "tideflow", task = %task, reason = %message, "Skipped")
            }
            other => tracing::info!(target: "tideflow", task = %task, "{}", other.name()),
        }
    }
}

fn param_name(s: &Static, x: usize, i: usize) -> &'static str {
    s.graph.nodes[x].task.params.get(i).map_or("?", |p| p.name)
}

/// What input `i` of mapped task `x` maps over: the upstream task, parameter or constant
/// (the task's parameter name when it is something else).
fn mapped_over(s: &Static, x: usize, i: usize) -> &str {
    let source = match s.graph.nodes[x].inputs.get(i) {
        Some(Input::Zip(m)) => return s.plans.get(m.index()).map_or("?", |p| &p.name),
        Some(Input::FanOut(src, _)) => src,
        _ => return param_name(s, x, i),
    };
    match source {
        Source::Node(id) | Source::Reduce(id, _) => s.plans.get(id.index()).map_or("?", |p| &p.name),
        Source::Param(p) => s.graph.params.get(*p).map_or("?", |p| p.name),
        Source::Const(_, text) => text,
        Source::Gather(..) | Source::First(..) => param_name(s, x, i),
    }
}

fn skipped_by(s: &Static, u: UpId) -> State {
    State::Skipped {
        message: format!("upstream `{}` was skipped", s.name(u)),
    }
}

/// "trigger `all_successful` did not pass (not every upstream task succeeded): `t1` ended Failed".
fn trigger_message<'a>(s: &Static, trigger: Trigger, ups: impl Iterator<Item = (UpId, &'a State)>) -> String {
    let (why, offends): (&str, fn(&State) -> bool) = match trigger {
        Trigger::AllSuccessful => ("not every upstream task succeeded", |st| !st.is_successful()),
        Trigger::AllFailed => ("not every upstream task failed", |st| !st.is_failed()),
        Trigger::AnySuccessful => ("no upstream task succeeded", |_| true),
        Trigger::AnyFailed => ("no upstream task failed", |_| true),
        Trigger::AllFinished => ("an upstream task did not finish", |st| !st.is_finished()),
    };
    let mut message = format!("trigger `{trigger}` did not pass ({why}): ");
    for (shown, (u, st)) in ups.filter(|(_, st)| offends(st)).enumerate() {
        if shown == LISTED {
            message.push_str(", and more");
            break;
        }
        if shown > 0 {
            message.push_str(", ");
        }
        let _ = write!(message, "`{}` ended {}", s.name(u), st.name());
    }
    message
}
