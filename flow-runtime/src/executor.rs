//! Where task bodies run.

use std::num::NonZeroUsize;
use std::time::Duration;

/// Runs tasks in this process, at most `max_concurrency` task runs at once. The default
/// executor.
///
/// - Async tasks run concurrently on tokio, within the flow run's own task (no spawn per
///   task run): an async task must not block its thread; CPU-bound work belongs in a
///   sync task.
/// - Sync tasks run on a compute pool of `sync_threads` threads (as many as cores by
///   default), off the async threads. A sync task whose runs take at most a few
///   microseconds is run inline by the scheduler while the pool is idle, since handing it
///   to a thread and back would cost more than the task itself (a long chain of small
///   tasks); one slower run sends it back to the pool.
/// - [`LocalExecutor::tag_limit`] caps how many runs of the tasks with a tag run at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalExecutor {
    pub(crate) max_concurrency: usize,
    pub(crate) sync_threads: usize,
    pub(crate) inline_under: Duration,
    pub(crate) tag_limits: Vec<(String, usize)>,
}

/// How short a sync task's runs must be for the scheduler to run it inline.
pub(crate) const DEFAULT_INLINE_UNDER: Duration = Duration::from_micros(5);

impl LocalExecutor {
    /// At most 1024 task runs in flight; as many sync task runs at once as there are cores.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        LocalExecutor {
            max_concurrency: 1024,
            sync_threads: cores,
            inline_under: DEFAULT_INLINE_UNDER,
            tag_limits: Vec::new(),
        }
    }

    /// At most `limit` runs of tasks tagged `tag` (`#[task(tags = ["db"])]`) run at once,
    /// mapped children included; the others wait, in order, for a slot (a task waiting for
    /// a retry holds none). At least 1; setting a tag again replaces its limit.
    /// For example `LocalExecutor::new().tag_limit("db", 2)`.
    pub fn tag_limit(mut self, tag: impl Into<String>, limit: usize) -> Self {
        let tag = tag.into();
        self.tag_limits.retain(|(t, _)| *t != tag);
        self.tag_limits.push((tag, limit.max(1)));
        self
    }

    /// Caps how many task runs (sync and async together) run at once; at least 1.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// Sets how many sync task bodies run at once on the compute pool; at least 1.
    pub fn sync_threads(mut self, n: usize) -> Self {
        self.sync_threads = n.max(1);
        self
    }

    /// Runs a sync task inline on the scheduler (while the pool is idle) once two of its
    /// runs in a row took at most `limit` (5 µs by default). `Duration::ZERO` keeps every
    /// sync task run on the compute pool.
    pub fn inline_sync_under(mut self, limit: Duration) -> Self {
        self.inline_under = limit;
        self
    }
}

impl Default for LocalExecutor {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs one task run at a time, in declaration order, depth first through maps: for
/// debugging, and for tests that want a deterministic order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequentialExecutor;

/// The executor a flow runs on; built from [`LocalExecutor`] or [`SequentialExecutor`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Executor {
    /// See [`LocalExecutor`].
    Local(LocalExecutor),
    /// See [`SequentialExecutor`].
    Sequential,
}

impl Default for Executor {
    fn default() -> Self {
        Executor::Local(LocalExecutor::new())
    }
}

impl From<LocalExecutor> for Executor {
    fn from(e: LocalExecutor) -> Self {
        Executor::Local(e)
    }
}

impl From<SequentialExecutor> for Executor {
    fn from(_: SequentialExecutor) -> Self {
        Executor::Sequential
    }
}
