//! The local backend: sync bodies on a compute pool (or inline, when they are known to be
//! microseconds long), async bodies polled by the scheduler's own task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt as _};
use futures::FutureExt as _;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::{AbortHandle, JoinSet};
use tracing::Dispatch;

use super::{Attempt, AttemptEnd, Ended, Report, Runner, Submitted};
use crate::executor::LocalExecutor;
use crate::graph::Graph;
use crate::task::{SyncBody, TaskBody};

/// A sync body whose runs took at most the executor's `inline_under` twice in a row is
/// run inline on the scheduler when the compute pool is idle: handing it to a pool thread
/// and back costs several microseconds of thread wake-ups, far more than the body itself
/// (a chain of small tasks). A slower run sends the task back to the pool.
const INLINE_AFTER: u8 = 2;

type LocalFuture = super::BoxedEnded;

/// Runs attempts in this process: see [`crate::LocalExecutor`].
pub(crate) struct LocalBackend {
    runner: Runner,
    max_concurrency: usize,
    inline_under: Duration,
    /// Per task (one slot per distinct task of the graph, by its `TaskDef`): how many of
    /// its sync runs in a row took at most `inline_under`. Shared by every node calling
    /// the same task, so a long chain of calls to one task learns from its first links.
    fast_runs: Vec<u8>,
    /// Per node: its task's slot in `fast_runs`.
    task_of: Vec<u32>,
    pool: Pool,
    /// Sync attempts handed to the pool and not back yet.
    pooled: usize,
    /// Async attempts, polled by the scheduler's task (no spawn per attempt).
    local: FuturesUnordered<LocalFuture>,
    /// Pool workers and timeout deadlines.
    tasks: JoinSet<Tick>,
    /// The deadline timer of each pooled sync attempt with a timeout, by serial.
    deadlines: HashMap<u64, AbortHandle>,
    /// Pooled attempts that ran past their timeout (or were cancelled), by serial: their
    /// late ends are discarded.
    abandoned: HashSet<u64>,
    /// The next pooled attempt's serial.
    serial: u64,
    rx: UnboundedReceiver<PoolMessage>,
    tx: UnboundedSender<PoolMessage>,
    cancelled: bool,
}

/// What the backend's own tasks return.
enum Tick {
    /// A pooled attempt ran past its timeout.
    Deadline {
        serial: u64,
        ticket: u32,
        started: Instant,
        limit: Duration,
    },
    /// A pool worker found no more work.
    Worker,
}

/// What pool workers send back.
enum PoolMessage {
    Started {
        serial: u64,
        ticket: u32,
        at: Instant,
    },
    Ended {
        serial: u64,
        ended: Ended,
        busy: Duration,
        node: u32,
    },
}

impl LocalBackend {
    pub(super) fn new(e: &LocalExecutor, graph: &Graph, runner: Runner) -> Self {
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
        let (tx, rx) = mpsc::unbounded_channel();
        LocalBackend {
            runner,
            max_concurrency: e.max_concurrency.max(1),
            inline_under: e.inline_under,
            fast_runs: vec![0; defs.len()],
            task_of,
            pool: Pool::new(e.sync_threads),
            pooled: 0,
            local: FuturesUnordered::new(),
            tasks: JoinSet::new(),
            deadlines: HashMap::new(),
            abandoned: HashSet::new(),
            serial: 0,
            rx,
            tx,
            cancelled: false,
        }
    }

    pub(super) fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// A sync body the backend has seen to be fast runs right here when the pool is idle
    /// (see [`INLINE_AFTER`]); other sync bodies go to the pool, async ones are polled.
    #[inline]
    pub(super) fn submit(&mut self, attempt: Attempt) -> Submitted {
        match attempt.def.body {
            TaskBody::Sync(body) => {
                let node = attempt.ctx.id.node;
                // An attempt with a timeout always goes to the pool: the scheduler must
                // stay free to end it at its deadline.
                if attempt.timeout.is_none()
                    && self.pooled == 0
                    && self.fast_runs[self.task_of[node as usize] as usize] >= INLINE_AFTER
                {
                    let ended = self.runner.run_sync(attempt, body);
                    self.learn(node, ended.ended.saturating_duration_since(ended.started));
                    return Submitted::Ran(ended);
                }
                self.serial += 1;
                let serial = self.serial;
                if let Some(limit) = attempt.timeout {
                    let ticket = attempt.ticket;
                    let started = Instant::now();
                    let timer = self.tasks.spawn(async move {
                        tokio::time::sleep(limit).await;
                        Tick::Deadline {
                            serial,
                            ticket,
                            started,
                            limit,
                        }
                    });
                    self.deadlines.insert(serial, timer);
                }
                self.pooled += 1;
                let job = PoolJob {
                    serial,
                    attempt,
                    body,
                    runner: self.runner.clone(),
                };
                self.pool.launch(job, &mut self.tasks, &self.tx);
                Submitted::Queued
            }
            TaskBody::Async(_) | TaskBody::Subflow(_) => {
                self.local.push(self.runner.run_async(attempt));
                Submitted::Started
            }
        }
    }

    /// Learns whether a task's sync runs are short enough to run inline.
    fn learn(&mut self, node: u32, busy: Duration) {
        let fast = &mut self.fast_runs[self.task_of[node as usize] as usize];
        *fast = if busy <= self.inline_under && !self.inline_under.is_zero() {
            fast.saturating_add(1)
        } else {
            0
        };
    }

    pub(super) async fn next(&mut self) -> Report {
        loop {
            if self.cancelled || (self.tasks.is_empty() && self.local.is_empty() && self.rx.is_empty()) {
                // Nothing runs: only the scheduler's own timers can move the run on.
                return std::future::pending().await;
            }
            let polled = tokio::select! {
                biased;
                Some(m) = self.rx.recv() => self.pool_report(m),
                Some(ended) = self.local.next() => Some(Report::Ended(ended)),
                Some(joined) = self.tasks.join_next() => match joined {
                    Ok(tick) => self.tick(tick),
                    Err(e) if e.is_cancelled() => None,
                    Err(e) => {
                        tracing::error!(error = %e, "a task of the local backend ended abnormally");
                        None
                    }
                },
            };
            if let Some(report) = polled {
                return report;
            }
        }
    }

    /// A report from the pool that is ready now.
    pub(super) fn try_next_pooled(&mut self) -> Option<Report> {
        while let Ok(m) = self.rx.try_recv() {
            if let Some(report) = self.pool_report(m) {
                return Some(report);
            }
        }
        None
    }

    /// An async attempt that ended, if one is ready now: lets the scheduler take every
    /// completion that is ready in one wake-up.
    pub(super) fn try_next_async(&mut self) -> Option<Report> {
        if self.local.is_empty() || self.cancelled {
            return None;
        }
        // Polled without a waker of its own: the scheduler polls `next` (with its
        // waker) before it sleeps, which registers it again.
        match self.local.next().now_or_never() {
            Some(Some(ended)) => Some(Report::Ended(ended)),
            _ => None,
        }
    }

    fn pool_report(&mut self, m: PoolMessage) -> Option<Report> {
        match m {
            PoolMessage::Started { serial, ticket, at } => {
                let abandoned = !self.abandoned.is_empty() && self.abandoned.contains(&serial);
                (!abandoned).then_some(Report::Started { ticket, at })
            }
            PoolMessage::Ended {
                serial,
                ended,
                busy,
                node,
            } => {
                self.pooled -= 1;
                self.learn(node, busy);
                // Most runs have no timeout: no hashing on their path.
                if !self.abandoned.is_empty() && self.abandoned.remove(&serial) {
                    tracing::debug!(
                        target: "tideflow",
                        attempt = ended.ticket,
                        "an abandoned attempt finished late; its result is discarded"
                    );
                    return None;
                }
                if !self.deadlines.is_empty() {
                    if let Some(timer) = self.deadlines.remove(&serial) {
                        timer.abort();
                    }
                }
                Some(Report::Ended(ended))
            }
        }
    }

    fn tick(&mut self, tick: Tick) -> Option<Report> {
        match tick {
            Tick::Worker => None,
            Tick::Deadline {
                serial,
                ticket,
                started,
                limit,
            } => {
                // The attempt may have finished just before its deadline.
                self.deadlines.remove(&serial)?;
                self.abandoned.insert(serial);
                Some(Report::Ended(Ended {
                    ticket,
                    started,
                    ended: Instant::now(),
                    end: AttemptEnd::TimedOut(limit),
                    subflow: None,
                }))
            }
        }
    }

    /// Gives the tickets of the queued attempts, which never start; running ones are
    /// dropped (async) or abandoned (sync).
    pub(super) fn cancel(&mut self) -> Vec<u32> {
        self.cancelled = true;
        self.local.clear();
        for (_, timer) in self.deadlines.drain() {
            timer.abort();
        }
        self.pool.clear()
    }

    pub(super) async fn close(mut self) {
        if self.pooled == 0 {
            // Only idle pool workers remain; they exit at once.
            while self.tasks.join_next().await.is_some() {}
        } else {
            // A sync attempt that ran past its timeout cannot be stopped: the run does
            // not wait for it (its result is discarded).
            self.tasks.detach_all();
        }
    }
}

/// A sync attempt queued for the pool.
struct PoolJob {
    serial: u64,
    attempt: Attempt,
    body: SyncBody,
    runner: Runner,
}

/// The compute pool: sync bodies run on tokio's blocking threads, at most `limit` at once.
///
/// Workers are started on demand and exit when the queue is empty, so an idle pool holds
/// no thread (and does not keep tokio's paused test clock from advancing).
struct Pool {
    shared: Arc<Mutex<Queue>>,
    limit: usize,
    /// The subscriber current where the flow runs, when there is one: task runs log to it
    /// from whichever thread they run on (a scoped subscriber included).
    dispatch: Option<Dispatch>,
}

struct Queue {
    jobs: VecDeque<PoolJob>,
    active: usize,
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // The lock is never held while user code runs, so poisoning cannot leave it inconsistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    fn new(limit: usize) -> Self {
        let dispatch = tracing::dispatcher::get_default(Dispatch::clone);
        Pool {
            shared: Arc::new(Mutex::new(Queue {
                jobs: VecDeque::new(),
                active: 0,
            })),
            limit: limit.max(1),
            dispatch: (!dispatch.is::<tracing::subscriber::NoSubscriber>()).then_some(dispatch),
        }
    }

    /// Queues a sync attempt; its reports come back on `tx`.
    fn launch(&self, job: PoolJob, tasks: &mut JoinSet<Tick>, tx: &UnboundedSender<PoolMessage>) {
        let start_worker = {
            let mut q = lock(&self.shared);
            q.jobs.push_back(job);
            if q.active < self.limit {
                q.active += 1;
                true
            } else {
                false
            }
        };
        if start_worker {
            let shared = Arc::clone(&self.shared);
            let tx = tx.clone();
            let dispatch = self.dispatch.clone();
            tasks.spawn_blocking(move || {
                match dispatch {
                    Some(d) => tracing::dispatcher::with_default(&d, || worker(&shared, &tx)),
                    None => worker(&shared, &tx),
                }
                Tick::Worker
            });
        }
    }

    /// Drops the queued jobs, which never start; gives their tickets.
    fn clear(&self) -> Vec<u32> {
        let jobs = std::mem::take(&mut lock(&self.shared).jobs);
        jobs.iter().map(|j| j.attempt.ticket).collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A run dropped before its end: queued jobs are not started.
        drop(self.clear());
    }
}

fn worker(shared: &Mutex<Queue>, tx: &UnboundedSender<PoolMessage>) {
    loop {
        let next = {
            let mut q = lock(shared);
            match q.jobs.pop_front() {
                Some(next) => next,
                None => {
                    q.active -= 1;
                    return;
                }
            }
        };
        let PoolJob {
            serial,
            attempt,
            body,
            runner,
        } = next;
        let node = attempt.ctx.id.node;
        if attempt.report_start {
            let _ = tx.send(PoolMessage::Started {
                serial,
                ticket: attempt.ticket,
                at: Instant::now(),
            });
        }
        let ended = runner.run_sync(attempt, body);
        let busy = ended.ended.saturating_duration_since(ended.started);
        // The scheduler outlives the pool's work unless the run was dropped; then the
        // report has nowhere to go and is dropped.
        let _ = tx.send(PoolMessage::Ended {
            serial,
            ended,
            busy,
            node,
        });
    }
}
