//! Task definitions: what `#[task]` generates and the registry of tasks by name.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::context::TaskContext;
use crate::error::TaskError;
use crate::state::State;
use crate::value::Value;

/// When a task runs, given the final states of its upstream tasks.
///
/// Every trigger passes when a task has no upstream tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// Every upstream task succeeded (the default).
    AllSuccessful,
    /// Every upstream task finished, whatever its state (also spelled `always_run`).
    AllFinished,
    /// At least one upstream task succeeded.
    AnySuccessful,
    /// At least one upstream task failed.
    AnyFailed,
    /// Every upstream task failed.
    AllFailed,
}

impl Trigger {
    /// The option's spelling in `#[task(trigger = ..)]`.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::AllSuccessful => "all_successful",
            Trigger::AllFinished => "all_finished",
            Trigger::AnySuccessful => "any_successful",
            Trigger::AnyFailed => "any_failed",
            Trigger::AllFailed => "all_failed",
        }
    }

    /// Whether the trigger passes for these upstream states (all final).
    pub fn passes<'a>(self, mut upstream: impl Iterator<Item = &'a State>) -> bool {
        match self {
            Trigger::AllFinished => true,
            Trigger::AllSuccessful => upstream.all(State::is_successful),
            Trigger::AllFailed => upstream.all(State::is_failed),
            Trigger::AnySuccessful => {
                let mut seen = false;
                let mut any = false;
                for s in upstream {
                    seen = true;
                    any |= s.is_successful();
                }
                !seen || any
            }
            Trigger::AnyFailed => {
                let mut seen = false;
                let mut any = false;
                for s in upstream {
                    seen = true;
                    any |= s.is_failed();
                }
                !seen || any
            }
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A task's options, as written in `#[task(..)]`.
#[derive(Clone, Copy, Debug)]
pub struct TaskOptions {
    /// Retries after the first attempt (`max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// The wait between a failed attempt and the next (the first one, with a backoff).
    pub retry_delay: Duration,
    /// How the wait grows from one retry to the next, its cap and its jitter.
    pub retry_backoff: Backoff,
    /// Which failures are retried (`None`: every failure). Signals (`TaskError::retry`,
    /// skips) and states decided before the task ran are not asked.
    pub retry_on: Option<fn(&TaskError) -> bool>,
    /// How long one attempt may run: an async attempt is cancelled at the timeout, a sync
    /// one is abandoned (it cannot be stopped mid-call; its late result is discarded).
    /// The attempt ends `TimedOut`, a failure, retried like any other.
    pub timeout: Option<Duration>,
    /// When the task runs, given its upstream states.
    pub trigger: Trigger,
    /// Skip when an upstream task was skipped (checked before the trigger).
    pub skip_on_upstream_skip: bool,
    /// Free-form tags (concurrency limits key on them).
    pub tags: &'static [&'static str],
    /// The task's inputs or output cannot cross a process boundary: it runs on the
    /// local executor only.
    pub local: bool,
    /// How long a cached result stays valid (`#[task(cache_for = "1h")]`). A run whose
    /// inputs match a valid cached result ends `Cached` without running the body.
    pub cache_for: Option<Duration>,
    /// The name cached results are filed under (by default the task's key): tasks that
    /// share a `cache_key` share results for equal inputs. Set alone, it caches for ever.
    pub cache_key: Option<&'static str>,
    /// Whether each successful result is written to the result store, for restarts:
    /// `Some(true)` for `#[task(persist)]`, `Some(false)` for `persist = false` (not even
    /// under [`Flow::persist_results`](crate::Flow::persist_results)), `None` to follow the flow.
    pub persist: Option<bool>,
    /// At most this many runs of the task share one unit of work of a cluster that
    /// batches short runs (`#[task(batch = 100)]`); `Some(1)` for `#[task(batch = false)]`:
    /// each run is sent alone. `None`: as the executor decides.
    pub batch: Option<u32>,
}

impl TaskOptions {
    /// The defaults: no retries, `all_successful`, skip on upstream skip, no tags.
    pub const DEFAULT: TaskOptions = TaskOptions {
        max_retries: 0,
        retry_delay: Duration::ZERO,
        retry_backoff: Backoff::NONE,
        retry_on: None,
        timeout: None,
        trigger: Trigger::AllSuccessful,
        skip_on_upstream_skip: true,
        tags: &[],
        local: false,
        cache_for: None,
        cache_key: None,
        persist: None,
        batch: None,
    };

    /// Whether results are looked up in, and written to, the cache.
    pub fn is_cached(&self) -> bool {
        self.cache_for.is_some() || self.cache_key.is_some()
    }
}

impl TaskOptions {
    /// The wait before retry number `retry` (1 for the first retry): `retry_delay` times
    /// `factor^(retry - 1)`, capped at `max`, then spread by `± jitter` of itself.
    /// `unit` is a number in `[0, 1)` for the jitter.
    pub fn retry_wait(&self, retry: u32, unit: f64) -> Duration {
        self.retry_backoff.wait(self.retry_delay, retry, unit)
    }
}

/// How retry waits grow: `#[task(retry_backoff = 2.0, retry_max_delay = "1m",
/// retry_jitter = 0.1)]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Each wait is this many times the previous one (1: constant waits).
    pub factor: f64,
    /// The longest wait.
    pub max: Option<Duration>,
    /// A fraction of each wait added or taken at random (0: exact waits).
    pub jitter: f64,
}

impl Backoff {
    /// Constant waits of `retry_delay`.
    pub const NONE: Backoff = Backoff {
        factor: 1.0,
        max: None,
        jitter: 0.0,
    };

    /// The wait before retry number `retry` (1 for the first) when the first wait is
    /// `delay`: see [`TaskOptions::retry_wait`].
    pub fn wait(&self, delay: Duration, retry: u32, unit: f64) -> Duration {
        let base = delay.as_secs_f64() * self.factor.powi(retry.saturating_sub(1) as i32);
        let capped = match self.max {
            Some(max) => base.min(max.as_secs_f64()),
            None => base,
        };
        let spread = capped * self.jitter * (2.0 * unit - 1.0);
        Duration::try_from_secs_f64((capped + spread).max(0.0)).unwrap_or(Duration::MAX)
    }
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A boxed future returned by an async task body.
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send + 'static>>;

/// A sync task body: takes the inputs (one value per parameter, in order).
pub type SyncBody = fn(Vec<Value>, &TaskContext) -> Result<Value, TaskError>;

/// An async task body.
pub type AsyncBody = fn(Vec<Value>, TaskContext) -> BoxFuture;

/// What a subflow's run gives back: its output (or why it failed) and its run record.
pub struct SubflowOutcome {
    /// The flow's output, or a failure naming its failed task runs.
    pub result: Result<Value, TaskError>,
    /// The subflow's run, shown in the parent's run result (`None` when it could not start).
    pub run: Option<Arc<crate::run::RunRecord>>,
}

/// A boxed future running a subflow.
pub type SubflowFuture = Pin<Box<dyn Future<Output = SubflowOutcome> + Send + 'static>>;

/// A flow called as a task of another flow: takes the flow's parameter values, in order.
pub type SubflowBody = fn(Vec<Value>, TaskContext) -> SubflowFuture;

/// How the engine calls a task.
#[derive(Clone, Copy)]
pub enum TaskBody {
    /// Runs on the compute pool, off the async threads.
    Sync(SyncBody),
    /// Runs on tokio.
    Async(AsyncBody),
    /// A flow called as a task: runs as an async task, its own flow run inside the parent's.
    Subflow(SubflowBody),
}

impl fmt::Debug for TaskBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskBody::Sync(_) => "Sync",
            TaskBody::Async(_) => "Async",
            TaskBody::Subflow(_) => "Subflow",
        })
    }
}

/// Writes a value of one type as bytes (JSON, or the compact wire format).
pub type EncodeFn = fn(&Value, &mut Vec<u8>) -> Result<(), String>;

/// Reads a value of one type from bytes (JSON, or the compact wire format).
pub type DecodeFn = fn(&[u8]) -> Result<Value, String>;

/// How a task's values cross a disk (serde through JSON: the result store, cache keys)
/// or a process (serde through MessagePack, compact: attempts sent to workers). Every
/// task but a `#[task(local)]` one has one.
#[derive(Clone, Copy)]
pub struct TaskCodec {
    /// Writes the task's output as JSON.
    pub encode_output: EncodeFn,
    /// Reads the task's output from JSON.
    pub decode_output: DecodeFn,
    /// Writes each data input as JSON, in order (cache keys hash them).
    pub encode_inputs: &'static [EncodeFn],
    /// Writes the task's output in the wire format.
    pub pack_output: EncodeFn,
    /// Reads the task's output from the wire format.
    pub unpack_output: DecodeFn,
    /// Writes each data input in the wire format, in order.
    pub pack_inputs: &'static [EncodeFn],
    /// Reads each data input from the wire format, in order.
    pub unpack_inputs: &'static [DecodeFn],
}

impl fmt::Debug for TaskCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCodec")
            .field("inputs", &self.encode_inputs.len())
            .finish_non_exhaustive()
    }
}

/// One parameter of a task, for messages and graph printing.
#[derive(Clone, Copy, Debug)]
pub struct TaskParam {
    /// The parameter's name.
    pub name: &'static str,
    /// Its type, as written (`&T` parameters show `T`).
    pub ty: &'static str,
}

/// Everything the runtime knows of a task; `#[task]` generates one per function.
#[derive(Debug)]
pub struct TaskDef {
    /// The task's name (its `name` option, or the function's name).
    pub name: &'static str,
    /// The stable key a worker finds the task by: `module::path::function`.
    pub key: &'static str,
    /// Its options.
    pub options: TaskOptions,
    /// Its data parameters (a `&TaskContext` parameter is not one).
    pub params: &'static [TaskParam],
    /// The type of the value it produces.
    pub output: &'static str,
    /// How to call it.
    pub body: TaskBody,
    /// How its values are written and read (`None` for a `#[task(local)]` task).
    pub codec: Option<&'static TaskCodec>,
}

impl TaskDef {
    /// `true` for an `async fn` task (and a subflow, which runs as one).
    pub fn is_async(&self) -> bool {
        matches!(self.body, TaskBody::Async(_) | TaskBody::Subflow(_))
    }

    /// `true` for a flow called as a task of another flow.
    pub fn is_subflow(&self) -> bool {
        matches!(self.body, TaskBody::Subflow(_))
    }
}

/// Implemented by the companion type `#[task]` generates next to each function (a braced
/// struct of the same name, so `clean(x)` still calls the function).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    label = "not a task",
    note = "only functions marked `#[task]`, and flows declared with `flow!`, can be called in a flow"
)]
pub trait Task: 'static {
    /// The value the task produces (`T` for a task returning `T` or `Result<T, E>`).
    type Output;
    /// `fn(A, B) -> Output` with the owned types of the data parameters.
    type Sig;
    /// The task's definition.
    const DEF: &'static TaskDef;
}

/// A registration `#[task]` submits to [`inventory`], so a worker process can find a
/// task by its key.
#[derive(Debug)]
pub struct TaskRegistration {
    /// The registered task.
    pub def: &'static TaskDef,
}

inventory::collect!(TaskRegistration);

/// Every task linked into this program, sorted by key, each once.
pub fn registered_tasks() -> Vec<&'static TaskDef> {
    let mut all: Vec<&'static TaskDef> = inventory::iter::<TaskRegistration>
        .into_iter()
        .map(|r| r.def)
        .collect();
    all.sort_by(|a, b| a.key.cmp(b.key));
    all.dedup_by(|a, b| a.key == b.key);
    all
}

/// The task registered under `key` (`module::path::function`).
pub fn find_task(key: &str) -> Option<&'static TaskDef> {
    inventory::iter::<TaskRegistration>
        .into_iter()
        .map(|r| r.def)
        .find(|d| d.key == key)
}
