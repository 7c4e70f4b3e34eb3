//! Running task bodies: attempts, retries and panics. Sync bodies run on a compute pool
//! off the async threads; async bodies run on tokio.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt as _;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tracing::{Dispatch, Instrument as _, Span};

use crate::context::TaskContext;
use crate::error::{SignalKind, TaskError};
use crate::notify::{Handlers, StateChange};
use crate::run::RunRecord;
use crate::state::State;
use crate::store::{Lookup, NodeStore};
use crate::task::{AsyncBody, BoxFuture, SubflowBody, SyncBody, TaskDef, TaskOptions};
use crate::value::Value;

/// One task run handed to an executor: its inputs and context, carried across attempts.
pub(super) struct Job {
    pub(super) node: usize,
    pub(super) index: Option<u32>,
    pub(super) def: &'static TaskDef,
    /// The task's retry and timeout options in this flow.
    pub(super) options: Policy,
    pub(super) inputs: Vec<Value>,
    pub(super) ctx: TaskContext,
    pub(super) started_at: Option<SystemTime>,
    /// The run's clock, for timestamps without a system-time read per task run.
    pub(super) clock: Clock,
    /// The flow run's span, parent of each attempt's `task_run` span.
    pub(super) parent: Span,
    /// The flow's task state handlers (`None` when it has none).
    pub(super) handlers: Option<Arc<Handlers>>,
    /// When the attempt that is about to start was scheduled by a retry (for the
    /// `Retrying -> Running` transition handlers see).
    pub(super) retry_at: Option<SystemTime>,
    /// For a sync attempt with a timeout, when the flow has task state handlers: claimed
    /// by whichever ends the attempt first, the attempt itself or its deadline, so that
    /// handlers see one end of it (an abandoned attempt's late end is not reported).
    pub(super) claim: Option<Arc<AtomicBool>>,
    /// How the task stores its results, when it persists or caches them.
    pub(super) store: Option<Arc<NodeStore>>,
    /// The key a cached task's result is filed under (found by the lookup).
    /// Boxed: most jobs have none, and every job is moved around.
    pub(super) cache_key: Option<Box<u128>>,
}

/// What an attempt needs of its task's options: a compact copy (every job carries one).
#[derive(Clone, Copy)]
pub(super) struct Policy {
    pub(super) max_retries: u32,
    pub(super) retry_delay: Duration,
    pub(super) retry_backoff: crate::task::Backoff,
    pub(super) retry_on: Option<fn(&TaskError) -> bool>,
    pub(super) timeout: Option<Duration>,
}

impl From<&TaskOptions> for Policy {
    fn from(o: &TaskOptions) -> Self {
        Policy {
            max_retries: o.max_retries,
            retry_delay: o.retry_delay,
            retry_backoff: o.retry_backoff,
            retry_on: o.retry_on,
            timeout: o.timeout,
        }
    }
}

/// Writes a task run's successful result to the result store.
struct Saver {
    store: Arc<NodeStore>,
    /// The task run's name (`clean[3]`), for what cannot be written.
    task: String,
    index: Option<u32>,
    cache_key: Option<u128>,
}

impl Saver {
    fn save(&self, v: &Value) {
        self.store.save(&self.task, self.index, v, self.cache_key);
    }
}

/// Wall-clock timestamps from monotonic readings: one system-time read per flow run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    instant: Instant,
    system: SystemTime,
}

impl Clock {
    pub(super) fn start() -> Self {
        Clock {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    /// The wall-clock time of a monotonic reading taken during the run.
    pub(super) fn system_time(&self, at: Instant) -> SystemTime {
        self.system + at.saturating_duration_since(self.instant)
    }
}

/// How an attempt ended.
pub(super) enum Outcome {
    Success(Value),
    /// The result was found in the store; the body did not run.
    Cached(Value),
    Failed(String),
    Skipped(String),
    TimedOut(String),
    /// The attempt failed and is to be retried: the scheduler waits this long (on tokio's
    /// clock), then submits the job again.
    Retry(Box<Job>, Duration),
}

/// An attempt that is to be retried: after how long, and the state it ended in.
pub(super) struct Retry {
    wait: Duration,
    ended: State,
}

/// What comes back to the scheduler when a task run ends (or a sync attempt is to be retried).
pub(super) struct Completion {
    pub(super) node: usize,
    pub(super) index: Option<u32>,
    pub(super) attempts: u32,
    pub(super) started_at: Option<SystemTime>,
    pub(super) ended_at: SystemTime,
    pub(super) outcome: Outcome,
    /// How long the last attempt's body ran (sync bodies that returned only).
    pub(super) busy: Option<Duration>,
    /// The run went through the compute pool (rather than inline on the scheduler).
    pub(super) pooled: bool,
    /// A subflow's run (its last attempt's).
    pub(super) subflow: Option<Arc<RunRecord>>,
}

/// What the engine's tasks (in its `JoinSet`) return.
pub(super) enum Done {
    /// An async task run ended.
    Task(Completion),
    /// A task run's retry delay has passed.
    RetryDue(Box<Job>),
    /// A sync attempt ran past its timeout: the job (a copy, with its inputs) for a retry.
    Deadline(Box<Job>),
    /// A compute pool worker found no more work.
    Worker,
}

/// How an attempt's body ended.
pub(super) enum Attempt {
    Returned(Result<Value, TaskError>),
    Panicked(Box<dyn Any + Send>),
    TimedOut(Duration),
}

/// `clean[3]` or `clean`, without allocating.
pub(super) struct FullName<'a>(pub(super) &'a str, pub(super) Option<u32>);

impl fmt::Display for FullName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(i) => write!(f, "{}[{i}]", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// The text of a panic payload, as a task run's failure message.
pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("task panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("task panicked: {s}")
    } else {
        "task panicked".to_owned()
    }
}

pub(super) fn task_span(job: &Job) -> Span {
    tracing::info_span!(
        parent: &job.parent,
        "task_run",
        task = %job.ctx.binding,
        map_index = job.index,
        attempt = job.ctx.attempt,
        flow_run_id = %job.ctx.id.flow_run,
    )
}

impl Job {
    fn retries_left(&self) -> bool {
        self.ctx.attempt <= self.options.max_retries
    }

    /// Starts an attempt at `now`: the inputs for it (kept for a later attempt while retries
    /// remain, moved out on the last one so the body can take them without a clone).
    fn begin_attempt(&mut self, now: Instant) -> Vec<Value> {
        if self.started_at.is_none() {
            self.started_at = Some(self.clock.system_time(now));
        }
        tracing::info!(target: "tideflow", "Running");
        if self.handlers.is_some() {
            let old = match self.retry_at.take() {
                Some(at) => State::Retrying {
                    attempt: self.ctx.attempt,
                    at,
                },
                None => State::Pending,
            };
            self.notify(old, State::Running, self.clock.system_time(now));
        }
        if self.retries_left() {
            self.inputs.clone()
        } else {
            std::mem::take(&mut self.inputs)
        }
    }

    /// Calls the task state handlers, if any, with this task run's transition.
    pub(super) fn notify(&self, old: State, new: State, at: SystemTime) {
        if let Some(handlers) = &self.handlers {
            handlers.call(&StateChange {
                flow: self.ctx.flow_name,
                flow_run_id: self.ctx.id.flow_run,
                task: Some(self.ctx.full_name()),
                old,
                new,
                at,
                failed_tasks: Vec::new(),
            });
        }
    }

    /// Ends an attempt that ended at `end`: its final completion, or a retry (telling the
    /// state handlers either way).
    pub(super) fn finish(mut self, attempt: Attempt, end: Instant) -> Completion {
        if self
            .claim
            .as_ref()
            .is_some_and(|c| c.swap(true, Ordering::SeqCst))
        {
            // Its deadline ended the attempt first: this late end is discarded unreported.
            self.handlers = None;
        }
        match self.settle(attempt) {
            Ok(outcome) => {
                if self.handlers.is_some() {
                    let new = match &outcome {
                        Outcome::Success(_) => State::Success,
                        Outcome::Failed(message) => State::Failed {
                            message: message.clone(),
                        },
                        Outcome::Skipped(message) => State::Skipped {
                            message: message.clone(),
                        },
                        Outcome::TimedOut(message) => State::TimedOut {
                            message: message.clone(),
                        },
                        Outcome::Retry(..) | Outcome::Cached(_) => {
                            unreachable!("settle neither retries nor finds cached results")
                        }
                    };
                    self.notify(State::Running, new, self.clock.system_time(end));
                }
                self.complete(outcome, end)
            }
            Err(Retry { wait, ended }) => {
                if self.handlers.is_some() {
                    let now = self.clock.system_time(end);
                    let at = now + wait;
                    self.notify(State::Running, ended.clone(), now);
                    let retrying = State::Retrying {
                        attempt: self.ctx.attempt + 1,
                        at,
                    };
                    self.notify(ended, retrying, now);
                    self.retry_at = Some(at);
                }
                self.retry(wait, end)
            }
        }
    }

    /// The attempt's final outcome, or `Err` when it is to be retried.
    fn settle(&self, attempt: Attempt) -> Result<Outcome, Retry> {
        let (message, retry, timed_out) = match attempt {
            Attempt::Returned(Ok(v)) => {
                tracing::info!(target: "tideflow", "Success");
                return Ok(Outcome::Success(v));
            }
            Attempt::Returned(Err(e)) => match e.kind() {
                SignalKind::Skip => {
                    let message = e.message();
                    tracing::info!(target: "tideflow", reason = %message, "Skipped");
                    return Ok(Outcome::Skipped(message));
                }
                // An explicit retry signal is honoured even past `max_retries`.
                SignalKind::Retry => (e.message(), true, false),
                _ => {
                    let wanted = self.options.retry_on.is_none_or(|retry_on| retry_on(&e));
                    (e.message(), wanted && self.retries_left(), false)
                }
            },
            Attempt::Panicked(payload) => (panic_message(&*payload), self.retries_left(), false),
            Attempt::TimedOut(limit) => {
                let message = format!("timed out after {limit:?}");
                if !self.retries_left() {
                    tracing::error!(target: "tideflow", error = %message, "TimedOut");
                    return Ok(Outcome::TimedOut(message));
                }
                (message, true, true)
            }
        };
        if retry {
            let unit = if self.options.retry_backoff.jitter > 0.0 {
                fastrand::f64()
            } else {
                0.5
            };
            let wait = self
                .options
                .retry_backoff
                .wait(self.options.retry_delay, self.ctx.attempt, unit);
            tracing::info!(target: "tideflow", error = %message, "Retrying in {wait:?}");
            let ended = if timed_out {
                State::TimedOut { message }
            } else {
                State::Failed { message }
            };
            Err(Retry { wait, ended })
        } else {
            tracing::error!(target: "tideflow", error = %message, "Failed");
            Ok(Outcome::Failed(message))
        }
    }

    /// What the scheduler keeps of a sync job while its attempt runs on the pool: enough
    /// to retry it if the attempt runs past its timeout.
    pub(super) fn retry_copy(&self) -> Job {
        Job {
            node: self.node,
            index: self.index,
            def: self.def,
            options: self.options,
            inputs: self.inputs.clone(),
            ctx: self.ctx.clone(),
            started_at: self
                .started_at
                .or_else(|| Some(self.clock.system_time(Instant::now()))),
            clock: self.clock,
            parent: self.parent.clone(),
            handlers: self.handlers.clone(),
            retry_at: self.retry_at,
            claim: self.claim.clone(),
            store: self.store.clone(),
            cache_key: self.cache_key.clone(),
        }
    }

    /// Before the first attempt of a task that stores results: the stored result, if
    /// there is one (a restarted run's, or a valid cached one); else notes the cache key.
    fn look_up(&mut self) -> Option<Value> {
        let store = self.store.as_ref()?;
        match store.lookup(&self.ctx.full_name(), self.index, &self.inputs) {
            Lookup::Found(v) => Some(v),
            Lookup::Missing(key) => {
                self.cache_key = key.map(Box::new);
                None
            }
        }
    }

    /// Ends the task run with a stored result, without running the body.
    fn cached(self, v: Value, at: Instant) -> Completion {
        tracing::info!(target: "tideflow", "Cached");
        let ended_at = self.clock.system_time(at);
        self.notify(State::Pending, State::Cached, ended_at);
        let mut c = self.complete(Outcome::Cached(v), at);
        c.attempts = 0;
        c
    }

    /// How this task run's successful result is stored, if it stores results.
    fn saver(&self) -> Option<Saver> {
        Some(Saver {
            store: Arc::clone(self.store.as_ref()?),
            task: self.ctx.full_name(),
            index: self.index,
            cache_key: self.cache_key.as_deref().copied(),
        })
    }

    /// The attempt is to be retried after `wait`.
    pub(super) fn retry(self, wait: Duration, ended: Instant) -> Completion {
        Completion {
            node: self.node,
            index: self.index,
            attempts: self.ctx.attempt,
            started_at: self.started_at,
            ended_at: self.clock.system_time(ended),
            outcome: Outcome::Retry(Box::new(self), wait),
            busy: None,
            pooled: false,
            subflow: None,
        }
    }

    pub(super) fn complete(self, outcome: Outcome, ended: Instant) -> Completion {
        Completion {
            node: self.node,
            index: self.index,
            attempts: self.ctx.attempt,
            started_at: self.started_at,
            ended_at: self.clock.system_time(ended),
            outcome,
            busy: None,
            pooled: false,
            subflow: None,
        }
    }
}

/// Runs one attempt of a sync body on the current thread (a pool thread, or the
/// scheduler's for a task the engine has seen to be fast).
pub(super) fn run_sync(mut job: Job, body: SyncBody) -> Completion {
    let span = task_span(&job);
    let _entered = span.enter();
    if job.store.is_some() && job.ctx.attempt == 1 {
        if let Some(v) = job.look_up() {
            return job.cached(v, Instant::now());
        }
    }
    // Two clock reads per attempt: both timestamps and the busy time come from them.
    let start = Instant::now();
    let inputs = job.begin_attempt(start);
    let attempt = match panic::catch_unwind(AssertUnwindSafe(|| body(inputs, &job.ctx))) {
        Ok(returned) => Attempt::Returned(returned),
        Err(payload) => Attempt::Panicked(payload),
    };
    let end = Instant::now();
    // An attempt that ran past its timeout stores nothing: its result is discarded.
    let in_time = job
        .options
        .timeout
        .is_none_or(|limit| end.saturating_duration_since(start) < limit);
    if let (Attempt::Returned(Ok(v)), true) = (&attempt, in_time) {
        if let Some(saver) = job.saver() {
            saver.save(v);
        }
    }
    let mut completion = job.finish(attempt, end);
    completion.busy = Some(end.saturating_duration_since(start));
    completion
}

/// Runs one attempt of an async body, cancelled at the task's timeout.
pub(super) fn run_async(job: Job, body: AsyncBody) -> impl std::future::Future<Output = Done> + Send {
    run_future(job, body)
}

/// Runs one attempt of an async task that stores its results: before the first attempt,
/// a stored result ends it `Cached`; a successful result is written afterwards. Store
/// reads and writes block, so they run off the scheduler's thread. A path of its own, so
/// that the future of every other async task run stays as small as it was.
pub(super) async fn run_async_stored(mut job: Job, body: AsyncBody) -> Done {
    let span = task_span(&job);
    if job.ctx.attempt == 1 {
        let looked = off_thread(span.clone(), move || {
            let found = panic::catch_unwind(AssertUnwindSafe(|| job.look_up()));
            (job, found)
        })
        .await;
        let Ok((j, found)) = looked else {
            // Only when the runtime shuts down, dropping the run with it.
            return Done::Worker;
        };
        job = j;
        match found {
            Ok(Some(v)) => return Done::Task(span.in_scope(|| job.cached(v, Instant::now()))),
            Ok(None) => {}
            Err(payload) => {
                let message = format!("looking up a stored result: {}", panic_message(&*payload));
                job.store = None;
                tracing::warn!(target: "tideflow", "{message}");
            }
        }
    }
    let saver = job.saver();
    let done = run_future(job, body).await;
    if let (Done::Task(c), Some(saver)) = (&done, saver) {
        // An async attempt past its timeout was cancelled: a success is a real one.
        if let Outcome::Success(v) = &c.outcome {
            let v = Arc::clone(v);
            let _ = off_thread(span, move || {
                let _ = panic::catch_unwind(AssertUnwindSafe(|| saver.save(&v)));
            })
            .await;
        }
    }
    done
}

/// Runs one attempt of a subflow: its own flow run, kept in the parent's run result.
pub(super) async fn run_subflow(job: Job, body: SubflowBody) -> Done {
    // The subflow's run comes back beside its result (an allocation per subflow run,
    // which is a flow run of its own: nothing on the path of ordinary async tasks).
    let slot: Arc<Mutex<Option<Arc<RunRecord>>>> = Arc::default();
    let put = Arc::clone(&slot);
    let call = move |inputs: Vec<Value>, ctx: TaskContext| -> BoxFuture {
        let run = body(inputs, ctx);
        Box::pin(async move {
            let outcome = run.await;
            *put.lock().unwrap_or_else(PoisonError::into_inner) = outcome.run;
            outcome.result
        })
    };
    match run_future(job, call).await {
        Done::Task(mut c) => {
            c.subflow = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            Done::Task(c)
        }
        other => other,
    }
}

async fn run_future<F>(mut job: Job, call: F) -> Done
where
    F: FnOnce(Vec<Value>, TaskContext) -> BoxFuture,
{
    let span = task_span(&job);
    let inputs = span.in_scope(|| job.begin_attempt(Instant::now()));
    let ctx = job.ctx.clone();
    let attempt = match panic::catch_unwind(AssertUnwindSafe(|| call(inputs, ctx))) {
        Ok(fut) => {
            let guarded = AssertUnwindSafe(fut).catch_unwind().instrument(span.clone());
            let finished = match job.options.timeout {
                // Dropping the future at the timeout cancels it: nothing after its next
                // await point runs.
                Some(limit) => tokio::time::timeout(limit, guarded).await.map_err(|_| limit),
                None => Ok(guarded.await),
            };
            match finished {
                Ok(Ok(returned)) => Attempt::Returned(returned),
                Ok(Err(payload)) => Attempt::Panicked(payload),
                Err(limit) => Attempt::TimedOut(limit),
            }
        }
        Err(payload) => Attempt::Panicked(payload),
    };
    let end = Instant::now();
    Done::Task(span.in_scope(|| job.finish(attempt, end)))
}

/// Runs blocking work (store reads and writes of an async task) on tokio's blocking
/// threads, logging in `span` to the subscriber current here.
async fn off_thread<R: Send + 'static>(
    span: Span,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, tokio::task::JoinError> {
    let dispatch = tracing::dispatcher::get_default(Dispatch::clone);
    tokio::task::spawn_blocking(move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(f)))
        .await
}

/// The compute pool: sync bodies run on tokio's blocking threads, at most `limit` at once.
///
/// Workers are started on demand and exit when the queue is empty, so an idle pool holds
/// no thread (and does not keep tokio's paused test clock from advancing).
pub(super) struct Pool {
    shared: Arc<Mutex<Queue>>,
    limit: usize,
    /// The subscriber current where the flow runs, when there is one: task runs log to it
    /// from whichever thread they run on (a scoped subscriber included).
    dispatch: Option<Dispatch>,
}

struct Queue {
    jobs: VecDeque<(Job, SyncBody)>,
    active: usize,
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // The lock is never held while user code runs, so poisoning cannot leave it inconsistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    pub(super) fn new(limit: usize) -> Self {
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

    /// Queues a sync task run; completions come back on `tx`.
    pub(super) fn launch(
        &self,
        job: Job,
        body: SyncBody,
        tasks: &mut JoinSet<Done>,
        tx: &UnboundedSender<Completion>,
    ) {
        let start_worker = {
            let mut q = lock(&self.shared);
            q.jobs.push_back((job, body));
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
                Done::Worker
            });
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A run dropped before its end: queued jobs are not started.
        let jobs = std::mem::take(&mut lock(&self.shared).jobs);
        drop(jobs);
    }
}

fn worker(shared: &Mutex<Queue>, tx: &UnboundedSender<Completion>) {
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
        let (job, body) = next;
        // The scheduler outlives the pool's work unless the run was dropped; then the
        // completion has nowhere to go and is dropped.
        let mut completion = run_sync(job, body);
        completion.pooled = true;
        let _ = tx.send(completion);
    }
}
