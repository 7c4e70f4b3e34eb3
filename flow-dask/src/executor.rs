//! `DaskExecutor`: a Dask cluster as a tideflow executor, one bridge shared by the runs.

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, BufWriter, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use flow_runtime::value::{RemoteKey, RemoteRef};
use flow_runtime::wire::WireAttempt;
use flow_runtime::worker::frame::{self, Batch, BatchDone, Frame, FrameError, Refused};
use flow_runtime::{ClusterConnection, ClusterExecutor, ClusterReply, Executor};
use tokio::sync::mpsc;

use crate::bridge::{python, Cluster, DaskBridge, DaskError, WorkerProgram};

/// How long a cluster with no run stays up by default.
const IDLE: Duration = Duration::from_secs(20 * 60);

/// How long a batch of short task runs should take on its worker, by default.
const BATCH_TARGET: Duration = Duration::from_millis(50);

/// The most task runs in one batch, by default.
const BATCH_MAX: usize = 100_000;

/// Batches of one task in flight at once, per worker: one running, the next ones waiting
/// on the worker, so that it never waits for the coordinator. Runs measured too long to
/// share a Dask task all go at once, as Dask balances them over every worker (also those
/// that join later).
const BATCHES_PER_WORKER: usize = 3;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs a flow's task attempts on a Dask cluster: `flow.executor(DaskExecutor::local(2))`.
///
/// The flow's scheduler stays in this program; each attempt of a task that can cross a
/// process runs on a Dask worker, in a long-lived worker process of this same program
/// (whose `main` must call `tideflow::worker::serve_if_worker()` first). Local tasks,
/// subflows and the gates of an `if` run here.
///
/// The runs of one `DaskExecutor` (and of its clones) share one bridge, and so one
/// cluster: started by the first run, it stays up while runs use it, and stops after
/// [`DaskExecutor::idle_timeout`] without one (20 minutes by default) or on
/// [`DaskExecutor::close`]. A later run starts it again.
#[derive(Clone)]
pub struct DaskExecutor {
    config: Arc<Config>,
    hub: Arc<Mutex<Option<Arc<Hub>>>>,
    /// Bytes read from the bridges of this executor, all told.
    received: Arc<AtomicU64>,
    /// Batches of more than one task run sent, and the task runs in them.
    batched: Arc<[AtomicU64; 2]>,
}

struct Config {
    cluster: Cluster,
    program: Option<WorkerProgram>,
    python: Option<PathBuf>,
    max_concurrency: usize,
    idle: Duration,
    tag_limits: Vec<(String, usize)>,
    batching: Batching,
}

/// How the task runs of a mapped task are gathered into Dask tasks.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Batching {
    /// At most this many task runs per Dask task (1: batching off).
    max: usize,
    /// How long a batch should take on its worker.
    target: Duration,
}

impl Batching {
    /// The default, or what `TIDEFLOW_DASK_BATCH` says (`off`, or the most task runs
    /// in a batch); a value it cannot read is reported once and ignored.
    fn from_env() -> Self {
        let mut batching = Batching {
            max: BATCH_MAX,
            target: BATCH_TARGET,
        };
        match std::env::var("TIDEFLOW_DASK_BATCH") {
            Ok(v) if v.trim().eq_ignore_ascii_case("off") => batching.max = 1,
            Ok(v) if v.trim().is_empty() => {}
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => batching.max = n,
                _ => tracing::warn!(
                    target: "tideflow",
                    "TIDEFLOW_DASK_BATCH=`{v}` is neither `off` nor a number of task runs: batching \
                     stays adaptive (up to {BATCH_MAX} task runs a batch)"
                ),
            },
            Err(_) => {}
        }
        batching
    }

    /// How many of `queued` runs of a task to send as the next batch: enough to take
    /// about `target` at the measured `per_run` (seconds), at most an equal share of
    /// what is left for twice the workers, at least one. A task never measured goes one
    /// run at a time until its first batch is back.
    fn size(&self, per_run: Option<f64>, queued: usize, workers: usize) -> usize {
        let Some(per_run) = per_run else {
            return 1;
        };
        let by_time = self.target.as_secs_f64() / per_run.max(1e-7);
        let by_time = if by_time >= self.max as f64 {
            self.max
        } else {
            by_time as usize
        };
        let share = queued.div_ceil(2 * workers.max(1));
        by_time.min(share).min(self.max).max(1)
    }
}

impl std::fmt::Debug for DaskExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&flow_runtime::Cluster::describe(self))
    }
}

impl DaskExecutor {
    fn new(cluster: Cluster) -> Self {
        DaskExecutor {
            config: Arc::new(Config {
                cluster,
                program: None,
                python: None,
                max_concurrency: 100_000,
                idle: IDLE,
                tag_limits: Vec::new(),
                batching: Batching::from_env(),
            }),
            hub: Arc::default(),
            received: Arc::default(),
            batched: Arc::default(),
        }
    }

    fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            cluster: self.config.cluster.clone(),
            program: self.config.program.clone(),
            python: self.config.python.clone(),
            max_concurrency: self.config.max_concurrency,
            idle: self.config.idle,
            tag_limits: self.config.tag_limits.clone(),
            batching: self.config.batching,
        };
        change(&mut config);
        self.config = Arc::new(config);
        self
    }

    /// A running Dask scheduler at `address` (`tcp://host:port`, or `host:port`).
    ///
    /// # Errors
    /// [`DaskError::Address`] for something that is not such an address.
    pub fn connect(address: &str) -> Result<Self, DaskError> {
        let bad = |reason: &str| DaskError::Address {
            given: address.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = match address.split_once("://") {
            Some(("tcp" | "tls" | "ws" | "wss", rest)) => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "`{scheme}` is not a Dask protocol (tcp, tls, ws, wss)"
                )))
            }
            None => address,
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("it has no port"))?;
        if host.is_empty() {
            return Err(bad("it has no host"));
        }
        port.parse::<u16>()
            .map_err(|_| bad(&format!("`{port}` is not a port")))?;
        let address = if address.contains("://") {
            address.to_owned()
        } else {
            format!("tcp://{address}")
        };
        Ok(Self::new(Cluster::Connect(address)))
    }

    /// A local cluster of `n_workers` worker processes on 127.0.0.1, for a laptop and for
    /// tests, started by the first run that uses it.
    pub fn local(n_workers: usize) -> Self {
        Self::new(Cluster::Local(n_workers.max(1)))
    }

    /// The program the workers run (by default this one, from its path).
    pub fn program(self, program: WorkerProgram) -> Self {
        self.configure(|c| c.program = Some(program))
    }

    /// The Python that runs the bridge (by default `TIDEFLOW_PYTHON`, else `python3`).
    pub fn python(self, python: impl Into<PathBuf>) -> Self {
        let python = python.into();
        self.configure(|c| c.python = Some(python))
    }

    /// At most this many task runs of one flow run on the cluster at once (100,000 by
    /// default: Dask queues what its workers cannot run yet, and a map handed to it in
    /// one message costs the scheduler far less than in many).
    pub fn max_concurrency(self, n: usize) -> Self {
        self.configure(|c| c.max_concurrency = n.max(1))
    }

    /// At most `limit` runs of tasks tagged `tag` (`#[task(tags = ["db"])]`) run at once on
    /// the cluster, mapped children included, whatever flow run or program they belong
    /// to: each holds a lease of a Dask semaphore named `tideflow-tag-<tag>` while it
    /// runs (the first program to use a tag sets its limit). Within one flow run the
    /// others wait, in order, in the flow's scheduler, holding no worker. At least 1;
    /// setting a tag again replaces its limit.
    pub fn tag_limit(self, tag: impl Into<String>, limit: usize) -> Self {
        let tag = tag.into();
        self.configure(|c| {
            c.tag_limits.retain(|(t, _)| *t != tag);
            c.tag_limits.push((tag, limit.max(1)));
        })
    }

    /// At most `max` runs of one task go to Dask as one Dask task; `1` turns batching off
    /// (every task run is a Dask task of its own).
    ///
    /// By default the runs of a task that reads no tag's limit are batched adaptively:
    /// a task's first runs go one at a time, and once the workers have timed some, its
    /// runs go in batches that take about 50 ms on a worker ([`DaskExecutor::batch_target`]),
    /// never more than an equal share of what is left for twice the workers, and at most
    /// 100,000. Each run in a batch keeps its own states, attempts, retries, timeout,
    /// result and logs; a failed run is retried alone. The environment variable
    /// `TIDEFLOW_DASK_BATCH` sets the default: `off`, or a number of runs. A task bounds
    /// its own batches with `#[task(batch = N)]`, or has its runs sent alone with
    /// `#[task(batch = false)]`.
    pub fn batch_size(self, max: usize) -> Self {
        self.configure(|c| c.batching.max = max.max(1))
    }

    /// How long a batch of short task runs should take on its worker (50 ms by default):
    /// long enough that Dask's cost per task (about a millisecond) is small beside it,
    /// short enough that a map spreads over every worker.
    pub fn batch_target(self, target: Duration) -> Self {
        self.configure(|c| c.batching.target = target.max(Duration::from_micros(100)))
    }

    /// How long the bridge (and a local cluster) stays up with no run using it.
    pub fn idle_timeout(self, idle: Duration) -> Self {
        self.configure(|c| c.idle = idle)
    }

    /// The address of the scheduler the runs use, while the bridge is up.
    pub fn scheduler_address(&self) -> Option<String> {
        lock(&self.hub)
            .as_ref()
            .filter(|h| h.is_alive())
            .map(|h| h.scheduler.clone())
    }

    /// How many bytes this program has received from the cluster, all runs of this
    /// executor (and its clones) together: outcomes, log lines, and the results it needed
    /// here. Results that stay on the cluster are not among them.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// How many Dask tasks carried more than one task run (batches), and how many task
    /// runs they carried, all runs of this executor (and its clones) together.
    pub fn batched(&self) -> (u64, u64) {
        (
            self.batched[0].load(Ordering::Relaxed),
            self.batched[1].load(Ordering::Relaxed),
        )
    }

    /// Stops the bridge (and a local cluster) now, once the attempts under way are done.
    /// A later run starts it again.
    pub fn close(&self) {
        if let Some(hub) = lock(&self.hub).take() {
            hub.close();
        }
    }

    /// The shared bridge, started if there is none (or it went away).
    fn hub(&self) -> Result<Arc<Hub>, String> {
        let mut slot = lock(&self.hub);
        if let Some(hub) = slot.as_ref().filter(|h| h.is_alive()) {
            return Ok(Arc::clone(hub));
        }
        let c = &self.config;
        let program = match &c.program {
            Some(p) => p.clone(),
            None => {
                WorkerProgram::this_program().map_err(|e| format!("cannot find this program's path: {e}"))?
            }
        };
        let python = c.python.clone().unwrap_or_else(python);
        let bridge = DaskBridge::start_with(&python, &c.cluster, &program).map_err(|e| e.to_string())?;
        let hub = Hub::start(bridge, c.idle, Arc::clone(&self.received));
        *slot = Some(Arc::clone(&hub));
        Ok(hub)
    }
}

impl flow_runtime::Cluster for DaskExecutor {
    fn describe(&self) -> String {
        match &self.config.cluster {
            Cluster::Connect(addr) => format!("dask {addr}"),
            Cluster::Local(n) => format!("dask local cluster of {n} worker(s)"),
        }
    }

    fn tag_limits(&self) -> Vec<(String, usize)> {
        self.config.tag_limits.clone()
    }

    fn open(&self) -> Result<Box<dyn ClusterConnection>, String> {
        let hub = self.hub()?;
        let (tx, rx) = mpsc::unbounded_channel();
        hub.runs.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Connection {
            hub,
            tx,
            replies: rx,
            mine: Vec::new(),
            mine_bound: 4096,
            max_concurrency: self.config.max_concurrency,
            tag_limits: self.config.tag_limits.clone(),
            batching: self.config.batching,
            queued: HashMap::new(),
            bounds: HashMap::new(),
            flying: Arc::default(),
            batched: Arc::clone(&self.batched),
        }))
    }
}

impl From<DaskError> for flow_runtime::FlowError {
    /// So that `?` works in a `main` returning `Result<(), FlowError>`.
    fn from(e: DaskError) -> Self {
        flow_runtime::FlowError::Executor(e.to_string())
    }
}

impl From<DaskExecutor> for Executor {
    fn from(e: DaskExecutor) -> Self {
        Executor::Cluster(ClusterExecutor::new(e))
    }
}

/// Where each attempt's reply goes: its run, and its ticket there.
type Routes = Mutex<HashMap<u32, (mpsc::UnboundedSender<ClusterReply>, u32)>>;

/// A run's batches on the cluster, by task key.
type Flying = Mutex<HashMap<Arc<str>, usize>>;

/// Batches on the cluster, by number: the count of the run they are in, and their task.
type Batches = Mutex<HashMap<u32, (Weak<Flying>, Arc<str>)>>;

/// One bridge shared by the runs of a `DaskExecutor`: each attempt crosses under a
/// ticket of the hub's own, and its reply is routed back to its run.
struct Hub {
    input: Mutex<Option<BufWriter<ChildStdin>>>,
    child: Mutex<Child>,
    routes: Arc<Routes>,
    next: AtomicU32,
    /// Runs using the hub now.
    runs: AtomicUsize,
    /// When the last run stopped using it.
    idle_since: Mutex<Instant>,
    /// Why the bridge went away, once it did.
    lost: Arc<Mutex<Option<String>>>,
    scheduler: String,
    /// Keys of held results nothing refers to any more, to release on the cluster.
    releases: Mutex<Vec<String>>,
    /// Dask workers when the bridge started.
    workers: usize,
    /// Batches on the cluster: the run's count they are in, and their task.
    batches: Batches,
    next_batch: AtomicU32,
    /// Seconds a run of each task took on a worker, smoothed, by task key.
    per_run: Mutex<HashMap<Arc<str>, f64>>,
    /// Held results that attempts kept back for a batch read, with how many read each:
    /// not released before those attempts are sent.
    pinned: Mutex<HashMap<String, usize>>,
}

impl Hub {
    fn start(bridge: DaskBridge, idle: Duration, received: Arc<AtomicU64>) -> Arc<Hub> {
        let parts = bridge.into_parts();
        let routes: Arc<Routes> = Arc::default();
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let hub = Arc::new(Hub {
            input: Mutex::new(Some(parts.input)),
            child: Mutex::new(parts.child),
            routes: Arc::clone(&routes),
            next: AtomicU32::new(1),
            runs: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            lost: Arc::clone(&lost),
            scheduler: parts.scheduler.clone(),
            releases: Mutex::default(),
            workers: parts.workers.max(1),
            batches: Mutex::default(),
            next_batch: AtomicU32::new(1),
            per_run: Mutex::default(),
            pinned: Mutex::default(),
        });
        let (output, dir, scheduler) = (parts.output, parts.dir, parts.scheduler);
        let mut output = Counted(output, received);
        let weak = Arc::downgrade(&hub);
        let _ = std::thread::Builder::new()
            .name("tideflow-dask-replies".into())
            .spawn(move || {
                // The bridge's folder (Dask's scratch space in it) goes once the bridge
                // has closed its output, that is, once it and its cluster have stopped.
                let _dir = dir;
                read_replies(&mut output, &routes, &lost, &scheduler, &weak);
            });
        let weak = Arc::downgrade(&hub);
        let _ = std::thread::Builder::new()
            .name("tideflow-dask-idle".into())
            .spawn(move || watch_idle(&weak, idle));
        hub
    }

    fn is_alive(&self) -> bool {
        lock(&self.lost).is_none() && lock(&self.input).is_some()
    }

    /// A held result nothing refers to any more: released on the cluster with the next
    /// frame the hub writes (or within a second). Its route stays while its run goes on:
    /// Dask may still compute it again for a task that was waiting for it.
    fn release(&self, key: &str) {
        lock(&self.releases).push(key.to_owned());
    }

    /// Writes the pending releases, if any (those of results an attempt kept back
    /// still reads wait for it to be sent).
    fn flush_releases(&self, input: &mut BufWriter<ChildStdin>) -> std::io::Result<()> {
        let mut keys = std::mem::take(&mut *lock(&self.releases));
        if keys.is_empty() {
            return Ok(());
        }
        {
            let pinned = lock(&self.pinned);
            if !pinned.is_empty() {
                let (held, free): (Vec<String>, Vec<String>) =
                    keys.into_iter().partition(|k| pinned.contains_key(k));
                lock(&self.releases).extend(held);
                keys = free;
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        frame::write(input, &Frame::Release(keys))
    }

    /// Counts the held results `attempt` reads as read by an attempt kept back (`by` 1)
    /// or no longer (`by` -1).
    fn pin(&self, attempt: &WireAttempt, by: isize) {
        let mut keys = Vec::new();
        attempt.inputs.iter().for_each(|i| i.keys(&mut keys));
        if keys.is_empty() {
            return;
        }
        let mut pinned = lock(&self.pinned);
        for key in keys {
            if by > 0 {
                match pinned.get_mut(key) {
                    Some(n) => *n += 1,
                    None => {
                        pinned.insert(key.to_owned(), 1);
                    }
                }
            } else if let Some(n) = pinned.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    pinned.remove(key);
                }
            }
        }
    }

    /// What the bridge says of a batch: its time counts towards its task's, and once it
    /// is over its run may send another.
    fn batch_done(&self, done: &BatchDone) {
        let mut batches = lock(&self.batches);
        let entry = if done.last {
            batches.remove(&done.batch)
        } else {
            batches.get(&done.batch).cloned()
        };
        drop(batches);
        let Some((flying, task)) = entry else {
            return;
        };
        tracing::trace!(target: "tideflow::dask", batch = done.batch, timed = done.timed, seconds = done.seconds, last = done.last, "batch");
        if done.timed > 0 && done.seconds.is_finite() && done.seconds >= 0.0 {
            let measured = done.seconds / f64::from(done.timed);
            let mut per_run = lock(&self.per_run);
            let smoothed = per_run.entry(Arc::clone(&task)).or_insert(measured);
            // Half the weight to the newest batch: runs that turn slow shrink the next
            // batches within two of them.
            *smoothed = 0.5 * *smoothed + 0.5 * measured;
        }
        if done.last {
            if let Some(flying) = flying.upgrade() {
                if let Some(n) = lock(&flying).get_mut(&task) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    /// Closes the bridge's input: it finishes what runs, stops its cluster and exits.
    fn close(&self) {
        lock(&self.input).take();
        let _ = lock(&self.child).try_wait();
    }
}

/// A reader that counts what it reads.
struct Counted<R>(R, Arc<AtomicU64>);

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Routes every reply of the bridge to its run, until the bridge stops; then tells every
/// run with an attempt out that the bridge is gone.
fn read_replies(
    output: &mut Counted<BufReader<ChildStdout>>,
    routes: &Routes,
    lost: &Mutex<Option<String>>,
    at: &str,
    hub: &Weak<Hub>,
) {
    let why = loop {
        let (ticket, reply) = match frame::read(output) {
            Ok(Frame::Logs(ticket, lines)) => {
                if let Some((tx, mine)) = lock(routes).get(&ticket) {
                    let _ = tx.send(ClusterReply::Logs(*mine, lines));
                }
                continue;
            }
            Ok(Frame::Held(held)) => {
                // The route stays while the run goes on: a recomputation of the result
                // is reported to its run.
                let ticket = held.ticket;
                let hub = hub.clone();
                let key = RemoteKey::new(held.key, move |key| {
                    if let Some(hub) = hub.upgrade() {
                        hub.release(key);
                    }
                });
                let len = held.len.map(|n| n as usize);
                // Sent outside the lock: a run that ended drops the reference, which
                // releases it, which takes the lock.
                let route = lock(routes).get(&ticket).cloned();
                if let Some((tx, mine)) = route {
                    let _ = tx.send(ClusterReply::Held(mine, RemoteRef::new(key, len)));
                }
                continue;
            }
            Ok(Frame::BatchDone(done)) => {
                // Before the outcomes it counts: the run that reads them finds room for
                // its next batch.
                if let Some(hub) = hub.upgrade() {
                    hub.batch_done(&done);
                }
                continue;
            }
            Ok(Frame::Recomputed(ticket)) => {
                if let Some((tx, mine)) = lock(routes).get(&ticket) {
                    let _ = tx.send(ClusterReply::Recomputed(*mine));
                }
                continue;
            }
            Ok(Frame::Ended(ticket, end)) => (ticket, Ok(end)),
            Ok(Frame::Refused(Refused {
                ticket: Some(ticket),
                message,
            })) => (ticket, Err(message)),
            Ok(Frame::Refused(Refused {
                ticket: None,
                message,
            })) => break message,
            Ok(_) => break "the Dask bridge sent a frame only a coordinator sends".to_owned(),
            Err(FrameError::Closed) => {
                break format!("the Dask bridge to {at} stopped; its errors are above")
            }
            Err(e) => break format!("the Dask bridge to {at}: {e}"),
        };
        // A run that ended no longer listens; the bridge is still read to its end.
        if let Some((tx, mine)) = lock(routes).remove(&ticket) {
            let _ = tx.send(match reply {
                Ok(end) => ClusterReply::Ended(mine, end),
                Err(message) => ClusterReply::Refused(mine, message),
            });
        }
    };
    *lock(lost) = Some(why.clone());
    for (_, (tx, _)) in lock(routes).drain() {
        let _ = tx.send(ClusterReply::Lost(why.clone()));
    }
}

/// Closes the hub once no run has used it for `idle`; ends with the hub.
fn watch_idle(hub: &Weak<Hub>, idle: Duration) {
    let tick = idle.min(Duration::from_secs(1)).max(Duration::from_millis(10));
    loop {
        std::thread::sleep(tick);
        let Some(hub) = hub.upgrade() else {
            return;
        };
        if !hub.is_alive() {
            return;
        }
        if hub.runs.load(Ordering::SeqCst) == 0 && lock(&hub.idle_since).elapsed() >= idle {
            hub.close();
            return;
        }
        let mut input = lock(&hub.input);
        if let Some(input) = input.as_mut() {
            let _ = hub.flush_releases(input);
        }
    }
}

/// One flow run's use of the hub.
struct Connection {
    hub: Arc<Hub>,
    tx: mpsc::UnboundedSender<ClusterReply>,
    replies: mpsc::UnboundedReceiver<ClusterReply>,
    /// The hub tickets of this run's attempts (forgotten when the run ends).
    mine: Vec<u32>,
    /// How many tickets `mine` may hold before the answered ones are dropped from it.
    mine_bound: usize,
    max_concurrency: usize,
    /// The executor's tag limits: held cluster-wide, by every run on the cluster.
    tag_limits: Vec<(String, usize)>,
    batching: Batching,
    /// Attempts kept back to go in batches, by task key.
    queued: HashMap<Arc<str>, VecDeque<WireAttempt>>,
    /// The most runs per batch of each task this run sent (the executor's bound, or the
    /// task's own `#[task(batch = N)]` if lower), by task key.
    bounds: HashMap<String, usize>,
    /// This run's batches on the cluster, by task key.
    flying: Arc<Flying>,
    /// The executor's count of batches (see [`DaskExecutor::batched`]).
    batched: Arc<[AtomicU64; 2]>,
}

impl ClusterConnection for Connection {
    fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    fn submit(&mut self, attempt: &WireAttempt) -> Result<(), String> {
        if let Some(why) = lock(&self.hub.lost).clone() {
            return Err(why);
        }
        let ticket = self.hub.next.fetch_add(1, Ordering::SeqCst);
        lock(&self.hub.routes).insert(ticket, (self.tx.clone(), attempt.ticket));
        self.mine.push(ticket);
        if self.mine.len() > self.mine_bound {
            // Keep only the tickets still out.
            let routes = lock(&self.hub.routes);
            self.mine.retain(|t| routes.contains_key(t));
            // Twice what is still out: the tickets are looked over once per doubling,
            // not at every attempt of a large map.
            self.mine_bound = (2 * self.mine.len()).max(4096);
        }
        let mut wire = attempt.clone();
        wire.ticket = ticket;
        if !self.tag_limits.is_empty() {
            let tags = flow_runtime::find_task(&wire.task_key).map_or(&[][..], |d| d.options.tags);
            wire.limits = self
                .tag_limits
                .iter()
                .filter(|(tag, _)| tags.contains(&tag.as_str()))
                .map(|(tag, limit)| (tag.clone(), u32::try_from(*limit).unwrap_or(u32::MAX)))
                .collect();
        }
        if wire.limits.is_empty() && self.bound(&wire.task_key) > 1 {
            // A run that takes no tag's lease can share a Dask task with its siblings.
            self.hub.pin(&wire, 1);
            match self.queued.get_mut(wire.task_key.as_str()) {
                Some(queue) => queue.push_back(wire),
                None => {
                    let task: Arc<str> = Arc::from(wire.task_key.as_str());
                    self.queued.insert(task, VecDeque::from([wire]));
                }
            }
            return Ok(());
        }
        let mut input = lock(&self.hub.input);
        let input = input.as_mut().ok_or("the Dask bridge was closed")?;
        let bridge = |e: std::io::Error| format!("the Dask bridge: {e}");
        self.hub.flush_releases(input).map_err(bridge)?;
        frame::write(input, &Frame::Routed(wire)).map_err(bridge)
    }

    fn flush(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        let workers = self.hub.workers;
        let room = BATCHES_PER_WORKER * workers;
        let mut batches = Vec::new();
        {
            let mut flying = lock(&self.flying);
            let per_run = lock(&self.hub.per_run);
            for (task, queue) in &mut self.queued {
                let out = flying.entry(Arc::clone(task)).or_insert(0);
                let measured = per_run.get(task).copied();
                let batching = Batching {
                    max: self.bounds.get(&**task).copied().unwrap_or(self.batching.max),
                    ..self.batching
                };
                let alone = measured.is_some() && batching.size(measured, usize::MAX, 1) == 1;
                while !queue.is_empty() && (*out < room || alone) {
                    let size = batching.size(measured, queue.len(), workers);
                    let attempts: Vec<WireAttempt> = queue.drain(..size.min(queue.len())).collect();
                    let id = self.hub.next_batch.fetch_add(1, Ordering::Relaxed);
                    lock(&self.hub.batches).insert(id, (Arc::downgrade(&self.flying), Arc::clone(task)));
                    *out += 1;
                    if attempts.len() > 1 {
                        self.batched[0].fetch_add(1, Ordering::Relaxed);
                        self.batched[1].fetch_add(attempts.len() as u64, Ordering::Relaxed);
                    }
                    batches.push(Batch { id, attempts });
                }
            }
            self.queued.retain(|_, queue| !queue.is_empty());
        }
        let mut input = lock(&self.hub.input);
        let mut failed = None;
        for batch in batches {
            let batch = Frame::Batch(batch);
            if failed.is_none() {
                let written = match input.as_mut() {
                    None => Err("the Dask bridge was closed".to_owned()),
                    Some(input) => self
                        .hub
                        .flush_releases(input)
                        .and_then(|()| frame::write(input, &batch))
                        .map_err(|e| format!("the Dask bridge: {e}")),
                };
                if let Err(e) = written {
                    failed = Some(e);
                }
            }
            let Frame::Batch(batch) = batch else { continue };
            // Sent (the bridge has the data it reads before any release), or not.
            batch.attempts.iter().for_each(|a| self.hub.pin(a, -1));
            if failed.is_none() {
                continue;
            }
            // Not sent: its runs are answered here.
            let message = failed.clone().unwrap_or_default();
            lock(&self.hub.batches).remove(&batch.id);
            let mut routes = lock(&self.hub.routes);
            for a in batch.attempts {
                if let Some((tx, mine)) = routes.remove(&a.ticket) {
                    let _ = tx.send(ClusterReply::Refused(
                        mine,
                        format!("the attempt cannot be sent to the cluster: {message}"),
                    ));
                }
            }
        }
    }

    fn replies(&mut self) -> &mut mpsc::UnboundedReceiver<ClusterReply> {
        &mut self.replies
    }

    fn cancel(&mut self) {
        self.forget();
    }
}

impl Connection {
    /// The most runs of `task` in one batch: the executor's bound, or the task's own if
    /// lower (1: its runs are sent alone).
    fn bound(&mut self, task: &str) -> usize {
        if let Some(bound) = self.bounds.get(task) {
            return *bound;
        }
        let own = flow_runtime::find_task(task)
            .and_then(|d| d.options.batch)
            .map_or(usize::MAX, |n| n as usize);
        let bound = self.batching.max.min(own).max(1);
        self.bounds.insert(task.to_owned(), bound);
        bound
    }

    /// Stops routing this run's replies; what it kept back is dropped.
    fn forget(&mut self) {
        for (_, queue) in self.queued.drain() {
            queue.iter().for_each(|a| self.hub.pin(a, -1));
        }
        let mut routes = lock(&self.hub.routes);
        for t in self.mine.drain(..) {
            routes.remove(&t);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.forget();
        *lock(&self.hub.idle_since) = Instant::now();
        self.hub.runs.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batching(max: usize, target_ms: u64) -> Batching {
        Batching {
            max,
            target: Duration::from_millis(target_ms),
        }
    }

    #[test]
    fn a_batch_takes_about_its_target_and_leaves_every_worker_a_share() {
        let b = batching(BATCH_MAX, 50);
        // Never timed: one run at a time.
        assert_eq!(b.size(None, 10_000, 2), 1);
        // 50 µs a run: 1,000 runs make 50 ms.
        assert_eq!(b.size(Some(50e-6), 100_000, 2), 1_000);
        // ... but 10,000 queued on 2 workers: at most 2,500 per batch; 100 left: 25.
        assert_eq!(b.size(Some(1e-6), 10_000, 2), 2_500);
        assert_eq!(b.size(Some(50e-6), 100, 2), 25);
        // Runs as long as the target or longer: alone.
        assert_eq!(b.size(Some(0.05), 10_000, 2), 1);
        assert_eq!(b.size(Some(3.0), 10_000, 2), 1);
        // The bound, and batching off.
        assert_eq!(batching(64, 50).size(Some(1e-6), 100_000, 2), 64);
        assert_eq!(batching(1, 50).size(Some(1e-6), 100_000, 2), 1);
        // A time of zero is not a division by zero.
        assert_eq!(b.size(Some(0.0), 8, 2), 2);
    }
}
