//! The scheduler: owns a run's progress through the graph and decides every state.
//!
//! One scheduler owns the whole run state (no locks on the hot path). It starts ready task
//! runs, at most the backend's `max_concurrency` at a time and lowest map index first, so
//! a chain of maps runs element by element (depth first). For each task run it decides,
//! in this order, as Prefect does: an upstream skip skips it (`skip_on_upstream_skip`),
//! then its trigger decides whether it runs, then an input without a value (its upstream
//! failed or skipped, but the trigger let it through) stops it. A mapped task is checked
//! once as a whole when it expands (upstream states that are the same for every child),
//! then each child with the states of the children it zips over.
//!
//! A task run that runs looks up a stored result first (a cache hit, or a restarted
//! run's result), waits for its tag slots, then goes to the backend as an
//! [`Attempt`]; the backend's [`Report`]s come back here, where a failed attempt is
//! retried after its delay (on tokio's clock) or ends the task run. A result is dropped
//! as soon as its last consumer has read it, unless it is kept for the run record.

use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::slice;
use std::sync::Arc;
use std::time::SystemTime;

use slab::Slab;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tracing::{Dispatch, Instrument as _, Span};

mod checks;
mod finish;
mod inputs;

use self::inputs::*;
use super::backend::{
    self, panic_message, Attempt, AttemptEnd, Backend, Ended, Report, Runner, SequentialBackend, Submitted,
};
use super::plan::{self, NodePlan, UpRef};
use super::store_work::StoreWork;
use super::transition::{Clock, FullName, Stamp, Transitions, UpId};
use super::{Control, Inherited, RunOptions};
use crate::context::{FlowRunId, TaskContext, TaskRunId};
use crate::error::SignalKind;
use crate::event::Publisher;
use crate::graph::{Graph, Input, NodeKind, Source};
use crate::run::{ChildRun, RunRecord, TaskRun};
use crate::state::State;
use crate::store::{Lookup, NodeStore, ResultStore, RunManifest, RunStore};
use crate::task::Trigger;
use crate::value::{Data, DataError, Value};

/// At most this many upstream task runs are named in a trigger or flow failure message.
const LISTED: usize = 10;

/// What a cancelled task run's state says.
const CANCELLED: &str = "the flow run was cancelled";

/// Runs `graph` with these parameter values to completion (or until cancelled).
pub(super) async fn run(
    graph: Arc<Graph>,
    params: Vec<Value>,
    options: RunOptions,
    id: FlowRunId,
    control: Option<UnboundedReceiver<Control>>,
) -> RunRecord {
    let span = tracing::info_span!("flow_run", flow = graph.name, flow_run_id = %id);
    let (s, sched) = Scheduler::new(graph, params, options, id, span.clone(), control);
    sched.run(&s).instrument(span).await
}

/// The next message of a run's handle (`None` once every handle is gone).
async fn recv_control(control: &mut Option<UnboundedReceiver<Control>>) -> Option<Control> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Why an input has no value.
#[derive(Clone, Debug)]
enum Missing {
    /// Its upstream task run ended without a result.
    Up(UpId),
    /// The graph reads a parameter or task it does not have.
    Unknown,
    /// The engine already released the value (a bug, reported rather than hidden).
    Released,
    /// The value exists but cannot be read where the task runs.
    Unreadable(DataError),
}

/// What a run needs that never changes while it runs.
struct Static {
    graph: Arc<Graph>,
    /// The run's parameter values as JSON, for `TaskContext::parameters`.
    params_json: Arc<serde_json::Map<String, serde_json::Value>>,
    clock: Clock,
    plans: Vec<NodePlan>,
    flow_run: FlowRunId,
    options: RunOptions,
    /// Per node: how it stores results, when it persists or caches them.
    stores: Vec<Option<Arc<NodeStore>>>,
    /// What the run stores, when any task persists or caches results.
    run_store: Option<Arc<RunStore>>,
    /// Per node: the executor's limited tags its task carries.
    limited_tags: Vec<Vec<u16>>,
    /// On a cluster, per node: its attempts take their inputs in whatever form they are
    /// (data the cluster holds stays there); empty on other backends.
    raw_inputs: Vec<bool>,
    /// On a cluster, per node: its results must come back here (see
    /// [`plan::needed_here`]); empty on other backends.
    result_here: Vec<bool>,
}

impl Static {
    fn name(&self, u: UpId) -> FullName<'_> {
        FullName(&self.plans[u.node].name, u.index)
    }
}

/// The run state of one node.
struct NodeRun {
    /// The state (`Mapped` once a mapped task expanded), written by transitions only.
    state: State,
    finished: bool,
    expanded: bool,
    /// Upstream events still awaited before the node is ready or expands.
    waits: u32,
    attempts: u32,
    started_at: Option<SystemTime>,
    ended_at: Option<SystemTime>,
    result: Option<Data>,
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
    Broadcast(Option<Data>),
    /// A value every child needs but that was not produced.
    Missing(Missing),
    /// One element per child.
    Elements(Vec<Option<Data>>),
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

/// A task run that was handed on and has not ended: between its first lookup or attempt
/// and its final state, across retries.
struct Flight {
    node: u32,
    index: Option<u32>,
    /// The current attempt, from 1.
    attempt: u32,
    /// When the task run became ready, or when its retry wait ended.
    scheduled_start: SystemTime,
    /// When its first attempt started.
    started_at: Option<SystemTime>,
    /// The current attempt is `Running` in the record.
    running: bool,
    /// The current attempt was handed to the backend and has not ended.
    submitted: bool,
    /// The inputs, kept for the next attempt while retries remain (moved into the last).
    inputs: Vec<Value>,
    /// The key a cached task's result is filed under (found by the lookup).
    cache_key: Option<u128>,
}

/// What the scheduler's own tasks return.
enum Job {
    /// A task run's retry wait has passed.
    RetryDue(u32),
    /// The store was looked up before a task run's first attempt.
    Looked(u32, Result<Lookup, String>),
    /// A successful result was written to the store.
    Saved(u32, SavedRun),
}

/// A successful task run whose result is being stored.
struct SavedRun {
    value: Value,
    ended: Stamp,
}

/// What woke the scheduler up.
enum Wake {
    Control(Option<Control>),
    Report(Report),
    Job(Job),
    Nothing,
}

/// Everything the scheduler changes while the flow runs.
struct Scheduler {
    nodes: Vec<NodeRun>,
    params: Vec<Value>,
    ready: BinaryHeap<Ready>,
    newly_ready: Vec<usize>,
    /// Task runs handed on and not ended, by ticket.
    flights: Slab<Flight>,
    /// Per limited tag: its limit and how many attempts hold a slot now.
    tag_slots: Vec<(usize, usize)>,
    /// Task runs waiting for a tag slot, in the order they became ready.
    tag_waiting: VecDeque<u32>,
    /// Task runs whose tag slots came free, to submit before anything else starts.
    unblocked: VecDeque<u32>,
    max_concurrency: usize,
    backend: Backend,
    /// Retry waits.
    jobs: JoinSet<Job>,
    /// Store lookups and writes.
    store: StoreWork<Job>,
    tr: Transitions,
    control: Option<UnboundedReceiver<Control>>,
    cancelled: bool,
    /// Why the executor cannot be used, when it cannot: no task runs.
    unusable: Option<String>,
}

impl Scheduler {
    fn new(
        graph: Arc<Graph>,
        params: Vec<Value>,
        options: RunOptions,
        flow_run: FlowRunId,
        span: Span,
        control: Option<UnboundedReceiver<Control>>,
    ) -> (Static, Self) {
        let plans = plan::plan(&graph, options.keep_results);
        let tag_limits = match &options.executor {
            crate::Executor::Local(e) => e.tag_limits.clone(),
            crate::Executor::Sequential => Vec::new(),
            crate::Executor::Cluster(c) => c.cluster().tag_limits(),
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
        let params_json: serde_json::Map<String, serde_json::Value> = graph
            .params
            .iter()
            .zip(&params)
            .map(|(spec, v)| (spec.name.to_owned(), (spec.to_json)(v)))
            .collect();
        let (stores, run_store) = node_stores(&graph, &options, flow_run, &plans, &params_json);
        let inherited = graph.nodes.iter().any(|n| n.task.is_subflow()).then(|| {
            Arc::new(Inherited {
                executor: options.executor.clone(),
                store: options.store.clone(),
                persist_all: options.persist_all,
                subscribers: options.subscribers.clone(),
            })
        });
        // A required parameter left unset: nothing runs, and the run fails naming it.
        let unset = graph
            .params
            .iter()
            .zip(&params)
            .find(|(_, v)| v.downcast_ref::<crate::graph::Unset>().is_some())
            .map(|(p, _)| {
                format!(
                    "parameter `{}` of flow `{}` is required and was not set: set it with `--param {0}=..` \
                     (the CLI) or `.with_param(\"{0}\", ..)`",
                    p.name, graph.name
                )
            });
        let backend = match unset {
            None => Backend::new(&options.executor, &graph, span.clone(), inherited),
            Some(why) => Err(why),
        };
        let (backend, unusable) = match backend {
            Ok(b) => (b, None),
            // Nothing will run: the run fails at once, naming why.
            Err(why) => (
                Backend::Sequential(SequentialBackend::new(Runner::new(span, None))),
                Some(why),
            ),
        };
        let (raw_inputs, result_here) = if matches!(backend, Backend::Cluster(_)) {
            let local = |x: usize| backend::runs_here(graph.nodes[x].task) || stores[x].is_some();
            let mut here = plan::needed_here(&graph, options.keep_results, local);
            for (x, h) in here.iter_mut().enumerate() {
                *h |= stores[x].is_some();
            }
            ((0..graph.nodes.len()).map(|x| !local(x)).collect(), here)
        } else {
            (Vec::new(), Vec::new())
        };
        let clock = Clock::start();
        let tr = Transitions::new(
            graph.name,
            flow_run,
            options.parent,
            clock,
            options.task_handlers.clone(),
            options.flow_handlers.clone(),
            Publisher::new(options.subscribers.clone()),
        );
        let sched = Scheduler {
            nodes,
            params,
            ready: BinaryHeap::new(),
            newly_ready: Vec::new(),
            flights: Slab::new(),
            tag_slots: tag_limits.iter().map(|(_, limit)| (*limit, 0)).collect(),
            tag_waiting: VecDeque::new(),
            unblocked: VecDeque::new(),
            max_concurrency: backend.max_concurrency(),
            backend,
            jobs: JoinSet::new(),
            store: StoreWork::new(tracing::dispatcher::get_default(Dispatch::clone)),
            tr,
            control,
            cancelled: false,
            unusable,
        };
        let s = Static {
            params_json: Arc::new(params_json),
            stores,
            run_store,
            graph,
            clock,
            plans,
            flow_run,
            options,
            limited_tags,
            raw_inputs,
            result_here,
        };
        (s, sched)
    }

    async fn run(mut self, s: &Static) -> RunRecord {
        let started_at = SystemTime::now();
        self.tr.flow(State::Running, Vec::new());
        if self.unusable.is_none() {
            self.newly_ready
                .extend((0..s.plans.len()).rev().filter(|&x| s.plans[x].waits == 0));
        }
        loop {
            let held_back = !self.cancelled && self.pump(s);
            self.tr.publisher.flush().await;
            if self.flights.is_empty() && self.ready.is_empty() && self.newly_ready.is_empty() {
                break;
            }
            if held_back {
                // Work waited for room in the outbox, not for anything in flight (which
                // may be nothing: inline bodies end as they start): start it now.
                continue;
            }
            if self.jobs.is_empty() && self.stuck_on_tags() {
                tracing::error!(
                    "the engine lost track of {} running task run(s)",
                    self.flights.len()
                );
                break;
            }
            let listening = self.control.is_some();
            let storing = self.store.pending() > 0;
            let wake = tokio::select! {
                biased;
                c = recv_control(&mut self.control), if listening => Wake::Control(c),
                r = self.backend.next() => Wake::Report(r),
                Some(job) = self.store.next(), if storing => Wake::Job(job),
                Some(joined) = self.jobs.join_next() => match joined {
                    Ok(job) => Wake::Job(job),
                    Err(e) if e.is_cancelled() => Wake::Nothing,
                    Err(e) => {
                        tracing::error!(error = %e, "an engine task ended abnormally");
                        Wake::Nothing
                    }
                },
            };
            match wake {
                Wake::Control(Some(Control::Cancel)) => self.cancel(s),
                Wake::Control(Some(Control::Subscribe(sub))) => self.tr.publisher.attach(sub),
                // Every handle is gone: nobody can cancel or subscribe any more.
                Wake::Control(None) => self.control = None,
                Wake::Report(r) => {
                    self.report(s, r);
                    // Every pooled attempt that ended: an idle pool lets short sync
                    // bodies run inline.
                    while let Some(r) = self.backend.try_next_pooled() {
                        self.report(s, r);
                    }
                    // Every async attempt that ended, each followed by the work it frees
                    // room for (its memory is reused while it is still in the
                    // allocator's per-thread cache).
                    while !self.cancelled && !self.tr.publisher.is_full() {
                        let _ = self.pump(s);
                        match self.backend.try_next_async() {
                            Some(r) => self.report(s, r),
                            None => break,
                        }
                    }
                }
                Wake::Job(job) => self.job(s, job),
                Wake::Nothing => {}
            }
        }
        let record = self.finish(s, started_at);
        self.tr.publisher.flush().await;
        self.backend.close().await;
        record
    }

    /// Every task run in flight waits for a tag slot, so none holds one and none will free
    /// one: the run cannot go on (a bug, reported rather than hung on).
    fn stuck_on_tags(&self) -> bool {
        !self.tag_waiting.is_empty()
            && self.unblocked.is_empty()
            && self.flights.len() == self.tag_waiting.len()
    }

    /// Stops the run: every task run that has not ended ends `Cancelled`, and nothing
    /// starts after this.
    fn cancel(&mut self, s: &Static) {
        if self.cancelled {
            return;
        }
        self.cancelled = true;
        let never_started = self.backend.cancel();
        self.jobs.abort_all();
        self.store.clear();
        self.tag_waiting.clear();
        self.unblocked.clear();
        // In graph order, so the cancellations read in a stable order.
        let mut tickets: Vec<(u32, Option<u32>, usize)> =
            self.flights.iter().map(|(t, f)| (f.node, f.index, t)).collect();
        tickets.sort_unstable();
        for (_, _, t) in tickets {
            let f = self.flights.remove(t);
            let state = State::Cancelled {
                message: CANCELLED.to_owned(),
            };
            // The current attempt counts if it reached the backend and started there.
            let started = f.submitted && !never_started.contains(&(t as u32));
            let attempts = if started { f.attempt } else { f.attempt - 1 };
            self.end_flown(s, &f, attempts, state, None, Stamp::Now);
        }
        self.ready.clear();
        self.newly_ready.clear();
    }

    /// The one way a task run's state changes here: through the transition point.
    #[inline]
    fn set(&mut self, s: &Static, who: UpId, attempt: u32, new: State, at: Stamp) {
        let node = &mut self.nodes[who.node];
        let slot = match who.index {
            None => &mut node.state,
            Some(i) => &mut node.children[i as usize].state,
        };
        self.tr.task(slot, &s.plans[who.node].name, who, attempt, new, at);
    }

    /// Starts ready work until the concurrency limit is reached or nothing is ready (or
    /// the events waiting for delivery fill the outbox). Returns whether it stopped with
    /// work ready because the outbox was full.
    fn pump(&mut self, s: &Static) -> bool {
        loop {
            while let Some(ticket) = self.unblocked.pop_front() {
                self.submit(s, ticket);
            }
            while let Some(y) = self.newly_ready.pop() {
                if s.graph.nodes[y].mapped {
                    self.expand(s, y);
                } else {
                    self.push_ready(y, 0, 1);
                }
            }
            if self.flights.len() >= self.max_concurrency {
                return false;
            }
            if self.tr.publisher.is_full() {
                return !self.ready.is_empty() || !self.unblocked.is_empty() || !self.newly_ready.is_empty();
            }
            let Some(top) = self.ready.peek_mut() else {
                return false;
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

    /// Hands a task run on: a lookup first when it stores results, then an attempt.
    fn dispatch(&mut self, s: &Static, x: usize, index: Option<u32>, inputs: Vec<Value>) {
        let ticket = self.flights.insert(Flight {
            node: x as u32,
            index,
            attempt: 1,
            scheduled_start: s.clock.now(),
            started_at: None,
            running: false,
            submitted: false,
            inputs,
            cache_key: None,
        }) as u32;
        match &s.stores[x] {
            Some(store) => self.look_up(s, ticket, Arc::clone(store)),
            None => self.submit(s, ticket),
        }
    }

    /// Before the first attempt of a task that stores results: looks for a stored result
    /// (a restarted run's, or a valid cached one), off the scheduler's thread.
    fn look_up(&mut self, s: &Static, ticket: u32, store: Arc<NodeStore>) {
        let f = &self.flights[ticket as usize];
        let task = s
            .name(UpId {
                node: f.node as usize,
                index: f.index,
            })
            .to_string();
        let (index, inputs) = (f.index, f.inputs.clone());
        self.store.push(Box::new(move || {
            let found = panic::catch_unwind(AssertUnwindSafe(|| store.lookup(&task, index, &inputs)))
                .map_err(|payload| panic_message(&*payload));
            Job::Looked(ticket, found)
        }));
    }

    /// Submits the current attempt of task run `ticket` to the backend, once it holds a
    /// slot of each limited tag its task carries.
    fn submit(&mut self, s: &Static, ticket: u32) {
        let f = &mut self.flights[ticket as usize];
        let x = f.node as usize;
        let tags = &s.limited_tags[x];
        if !tags.is_empty() {
            // Wait, behind the runs that waited first, while a tag has no free slot.
            if tags.iter().any(|&t| {
                let (limit, held) = self.tag_slots[t as usize];
                held >= limit
            }) {
                self.tag_waiting.push_back(ticket);
                return;
            }
            for &t in tags {
                self.tag_slots[t as usize].1 += 1;
            }
        }
        let node = &s.graph.nodes[x];
        let options = &node.options;
        // Kept for a later attempt while retries remain; moved into the last one, so the
        // body can take them without a clone.
        let inputs = if f.attempt <= options.max_retries {
            f.inputs.clone()
        } else {
            std::mem::take(&mut f.inputs)
        };
        let attempt = Attempt {
            ticket,
            def: node.task,
            inputs,
            ctx: TaskContext {
                id: TaskRunId {
                    flow_run: s.flow_run,
                    node: x as u32,
                    map_index: f.index,
                },
                flow_name: s.graph.name,
                task_name: node.task.name,
                binding: Arc::clone(&s.plans[x].name),
                attempt: f.attempt,
                scheduled_start: f.scheduled_start,
                params: Arc::clone(&s.params_json),
            },
            timeout: options.timeout,
            retry_on: options.retry_on,
            report_start: self.tr.observed(),
            result_here: s.result_here.get(x).copied().unwrap_or(true),
        };
        f.submitted = true;
        match self.backend.submit(attempt) {
            Submitted::Ran(ended) => self.ended(s, ended),
            Submitted::Started => self.running(s, ticket, Stamp::Now),
            Submitted::Queued => {}
        }
    }

    /// What the backend reported.
    fn report(&mut self, s: &Static, report: Report) {
        match report {
            Report::Started { ticket, at } => self.running(s, ticket, Stamp::At(at)),
            Report::Ended(ended) => self.ended(s, ended),
        }
    }

    /// The current attempt of `ticket` started.
    fn running(&mut self, s: &Static, ticket: u32, at: Stamp) {
        let Some(f) = self.flights.get_mut(ticket as usize) else {
            return;
        };
        if f.running {
            return;
        }
        f.running = true;
        if f.started_at.is_none() {
            f.started_at = Some(s.clock.at(at));
        }
        let who = UpId {
            node: f.node as usize,
            index: f.index,
        };
        let attempt = f.attempt;
        self.set(s, who, attempt, State::Running, at);
    }

    /// An attempt ended: the task run ends, or its next attempt waits for its delay.
    fn ended(&mut self, s: &Static, e: Ended) {
        let ticket = e.ticket;
        if !self.flights.contains(ticket as usize) {
            return;
        }
        self.running(s, ticket, Stamp::At(e.started));
        let f = &mut self.flights[ticket as usize];
        f.running = false;
        f.submitted = false;
        let x = f.node as usize;
        let who = UpId {
            node: x,
            index: f.index,
        };
        let attempt = f.attempt;
        self.release_tags(s, x);
        let options = &s.graph.nodes[x].options;
        let retries_left = attempt <= options.max_retries;
        let (message, retry, timed_out) = match e.end {
            AttemptEnd::Returned(v) => {
                if let Some(run) = e.subflow {
                    self.nodes[x].subflows.push((who.index, run));
                }
                let f = &self.flights[ticket as usize];
                if let Some(store) = s.stores[x]
                    .as_ref()
                    .filter(|st| st.persist || f.cache_key.is_some())
                {
                    return self.save(s, ticket, Arc::clone(store), v, Stamp::At(e.ended));
                }
                return self.end_flight(s, ticket, State::Success, Some(v), Stamp::At(e.ended));
            }
            AttemptEnd::Failed {
                message,
                signal: SignalKind::Skip,
                ..
            } => {
                let state = State::Skipped { message };
                return self.end_flight(s, ticket, state, None, Stamp::At(e.ended));
            }
            // An explicit retry signal is honoured even past `max_retries`.
            AttemptEnd::Failed {
                message,
                signal: SignalKind::Retry,
                ..
            } => (message, true, false),
            AttemptEnd::Failed {
                message,
                retry_wanted,
                ..
            } => (message, retry_wanted && retries_left, false),
            AttemptEnd::Panicked(message) => (message, retries_left, false),
            AttemptEnd::TimedOut(limit) => (format!("timed out after {limit:?}"), retries_left, true),
        };
        let failed = if timed_out {
            State::TimedOut { message }
        } else {
            State::Failed { message }
        };
        if let Some(run) = e.subflow.filter(|_| !retry) {
            self.nodes[x].subflows.push((who.index, run));
        }
        if !retry {
            return self.end_flight(s, ticket, failed, None, Stamp::At(e.ended));
        }
        let unit = if options.retry_backoff.jitter > 0.0 {
            fastrand::f64()
        } else {
            0.5
        };
        let wait = options.retry_backoff.wait(options.retry_delay, attempt, unit);
        let ended = s.clock.system_time(e.ended);
        let slot = match who.index {
            None => &mut self.nodes[x].state,
            Some(i) => &mut self.nodes[x].children[i as usize].state,
        };
        self.tr
            .retry(slot, &s.plans[x].name, who, attempt, failed, wait, ended);
        self.flights[ticket as usize].attempt += 1;
        self.jobs.spawn(async move {
            tokio::time::sleep(wait).await;
            Job::RetryDue(ticket)
        });
    }

    /// Writes a successful result to the store, off the scheduler's thread; the task run
    /// ends `Success` once it is written.
    fn save(&mut self, s: &Static, ticket: u32, store: Arc<NodeStore>, value: Value, ended: Stamp) {
        let f = &self.flights[ticket as usize];
        let task = s
            .name(UpId {
                node: f.node as usize,
                index: f.index,
            })
            .to_string();
        let (index, key) = (f.index, f.cache_key);
        self.store.push(Box::new(move || {
            let _ = panic::catch_unwind(AssertUnwindSafe(|| store.save(&task, index, &value, key)));
            Job::Saved(ticket, SavedRun { value, ended })
        }));
    }

    /// One of the scheduler's own tasks is done.
    fn job(&mut self, s: &Static, job: Job) {
        match job {
            Job::RetryDue(ticket) => {
                let Some(f) = self.flights.get_mut(ticket as usize) else {
                    return;
                };
                f.scheduled_start = s.clock.now();
                self.submit(s, ticket);
            }
            Job::Looked(ticket, found) => match found {
                Ok(Lookup::Found(v)) => {
                    self.end_flight(s, ticket, State::Cached, Some(v), Stamp::Now);
                }
                Ok(Lookup::Missing(key)) => {
                    if let Some(f) = self.flights.get_mut(ticket as usize) {
                        f.cache_key = key;
                        self.submit(s, ticket);
                    }
                }
                Err(message) => {
                    tracing::warn!(target: "tideflow", "looking up a stored result: {message}");
                    if self.flights.contains(ticket as usize) {
                        self.submit(s, ticket);
                    }
                }
            },
            Job::Saved(ticket, saved) => {
                self.end_flight(s, ticket, State::Success, Some(saved.value), saved.ended);
            }
        }
    }

    /// Task run `ticket` ends in `state`.
    fn end_flight(&mut self, s: &Static, ticket: u32, state: State, result: Option<Value>, at: Stamp) {
        if !self.flights.contains(ticket as usize) {
            return;
        }
        let f = self.flights.remove(ticket as usize);
        let attempts = if state.is_cached() { 0 } else { f.attempt };
        self.end_flown(s, &f, attempts, state, result, at);
    }

    /// The task run of flight `f`, taken off the table, ends in `state` after `attempts`.
    fn end_flown(
        &mut self,
        s: &Static,
        f: &Flight,
        attempts: u32,
        state: State,
        result: Option<Value>,
        at: Stamp,
    ) {
        self.end_run(
            s,
            f.node as usize,
            f.index,
            attempts,
            f.started_at,
            state,
            result,
            at,
        );
    }

    /// Task run (`x`, `index`) ends in `state`: recorded, then what waits for it is told.
    #[allow(clippy::too_many_arguments)]
    fn end_run(
        &mut self,
        s: &Static,
        x: usize,
        index: Option<u32>,
        attempts: u32,
        started_at: Option<SystemTime>,
        state: State,
        result: Option<Value>,
        at: Stamp,
    ) {
        let ended_at = s.clock.at(at);
        let who = UpId { node: x, index };
        self.set(s, who, attempts, state, Stamp::Wall(ended_at));
        let keep = s.plans[x].keep;
        match index {
            None => {
                let rt = &mut self.nodes[x];
                rt.attempts = attempts;
                rt.started_at = started_at;
                rt.result = result.filter(|_| keep || rt.uses > 0).map(Data::local);
                rt.ended_at = Some(ended_at);
                rt.finished = true;
                self.node_final(s, x);
            }
            Some(i) => {
                let c = &mut self.nodes[x].children[i as usize];
                c.attempts = attempts;
                c.started_at = started_at;
                c.ended_at = Some(ended_at);
                c.result = result.filter(|_| keep || c.uses > 0).map(Data::local);
                self.child_final(s, x, i as usize);
            }
        }
    }

    /// An attempt of node `x` ended: its tag slots go to the runs waiting for them.
    fn release_tags(&mut self, s: &Static, x: usize) {
        if s.limited_tags[x].is_empty() {
            return;
        }
        for &t in &s.limited_tags[x] {
            self.tag_slots[t as usize].1 -= 1;
        }
        // The waiting runs are submitted again, oldest first, before anything else starts.
        self.unblocked.extend(self.tag_waiting.drain(..));
    }

    /// A non-mapped task ends without running.
    fn resolve_node(&mut self, s: &Static, x: usize, state: State) {
        self.end_run(s, x, None, 0, None, state, None, Stamp::Now);
    }

    /// Child `i` of node `x` is final: zipped children downstream may start.
    fn child_final(&mut self, s: &Static, x: usize, i: usize) {
        let rt = &mut self.nodes[x];
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

    fn push_ready(&mut self, x: usize, start: usize, end: usize) {
        self.ready.push(Ready {
            node: Reverse(x as u32),
            start: Reverse(start as u32),
            end: end as u32,
        });
    }

    /// A non-mapped task run is ready: check it, then run it.
    fn start_node(&mut self, s: &Static, x: usize) {
        let node = &s.graph.nodes[x];
        let plan = &s.plans[x];
        if let Some(message) = &plan.invalid {
            self.release_sources(s, x);
            let state = State::Failed {
                message: message.clone(),
            };
            return self.resolve_node(s, x, state);
        }
        let ups = || self.ref_states(&plan.refs);
        if let Some(state) = self.decide(s, x, ups(), ups, true) {
            self.release_sources(s, x);
            return self.resolve_node(s, x, state);
        }
        let mut inputs = Vec::with_capacity(node.inputs.len());
        let mut missing = None;
        for (i, input) in node.inputs.iter().enumerate() {
            // A non-mapped task has only whole inputs (anything else makes it invalid).
            if let Input::Value(src) = input {
                match self
                    .eval(s, src, true)
                    .and_then(|d| input_value(s, x, d).map_err(Missing::Unreadable))
                {
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
        // With children zipped over, only an "all" trigger is decided by the shared states.
        let zipped = plan.zips.iter().any(|z| self.nodes[z.index()].expanded);
        let decided = !zipped || matches!(options.trigger, Trigger::AllSuccessful | Trigger::AllFailed);
        if let Some(state) = self.decide(s, x, shared(), shared, decided) {
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
                            missing.get_or_insert((i, m.clone()));
                        }
                        Slot::Missing(m)
                    }
                },
                Input::FanOut(src, split) => {
                    match self
                        .eval(s, src, true)
                        .and_then(|v| v.elements(*split).map_err(Missing::Unreadable))
                    {
                        Ok(elements) => {
                            lens.push((i, elements.len()));
                            Slot::Elements(elements.into_iter().map(Some).collect())
                        }
                        Err(m) => {
                            missing.get_or_insert((i, m.clone()));
                            Slot::Missing(m)
                        }
                    }
                }
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
        let now = s.clock.now();
        let rt = &mut self.nodes[x];
        rt.expanded = true;
        rt.started_at = Some(now);
        rt.children = children;
        rt.unstarted = n;
        rt.slots = slots;
        rt.level = level;
        self.set(
            s,
            UpId::own(x),
            0,
            State::Mapped { children: n },
            Stamp::Wall(now),
        );
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
                    missing.get_or_insert_with(|| (k, m.clone()));
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
            match got.map(|d| input_value(s, x, d)) {
                Some(Ok(v)) => inputs.push(v),
                Some(Err(e)) => {
                    missing.get_or_insert((k, Missing::Unreadable(e)));
                }
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
        // The shared upstream states, summed up when the map expanded, and the states of
        // the children this one zips over.
        let level = self.nodes[x].level;
        let ups = [level.skipped, level.successful, level.failed]
            .into_iter()
            .flatten()
            .map(|u| (u, self.state_of(u)))
            .chain(zip_states());
        let listed = || self.ref_states(&plan.refs).chain(zip_states());
        let verdict = self
            .decide(s, x, ups, listed, true)
            .or_else(|| missing.map(|(k, m)| self.missing_state(s, x, k, m)));
        if let Some(state) = verdict {
            drop(inputs);
            return self.end_run(s, x, Some(i as u32), 0, None, state, None, Stamp::Now);
        }
        self.dispatch(s, x, Some(i as u32), inputs);
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
