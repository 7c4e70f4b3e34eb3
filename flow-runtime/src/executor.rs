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

/// The executor a flow runs on; built from [`LocalExecutor`], [`SequentialExecutor`] or
/// a cluster executor (`DaskExecutor`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Executor {
    /// See [`LocalExecutor`].
    Local(LocalExecutor),
    /// See [`SequentialExecutor`].
    Sequential,
    /// Task attempts run on a cluster: see [`Cluster`].
    Cluster(ClusterExecutor),
}

/// A cluster that runs task attempts in other processes, as a backend of the engine
/// (implemented by `DaskExecutor` in the `flow-dask` crate).
///
/// Each flow run opens one [`ClusterConnection`]. Attempts cross in their wire form
/// ([`crate::wire`]); tasks that cannot cross (`#[task(local)]`, subflows, the gates and
/// merges of an `if`) run on a local backend beside it.
pub trait Cluster: Send + Sync + 'static {
    /// How the cluster is named in messages (`dask tcp://127.0.0.1:8786`).
    fn describe(&self) -> String;

    /// Opens a connection for one flow run.
    ///
    /// # Errors
    /// Why the cluster cannot be used: the flow run fails with this message before any
    /// task runs.
    fn open(&self) -> Result<Box<dyn ClusterConnection>, String>;

    /// Limits on how many runs of the tasks with a tag run at once (as
    /// [`LocalExecutor::tag_limit`]): the flow run's scheduler holds them back before
    /// they reach the cluster.
    fn tag_limits(&self) -> Vec<(String, usize)> {
        Vec::new()
    }
}

/// One flow run's connection to a [`Cluster`].
pub trait ClusterConnection: Send + 'static {
    /// At most this many task runs in flight at once.
    fn max_concurrency(&self) -> usize;

    /// Sends an attempt; its end comes back as a [`ClusterReply`].
    ///
    /// # Errors
    /// The attempt could not be sent: it ends `Failed` with this message.
    fn submit(&mut self, attempt: &crate::wire::WireAttempt) -> Result<(), String>;

    /// Sends what [`ClusterConnection::submit`] kept back, if it keeps any (a cluster may
    /// gather attempts into batches). Called when the scheduler has submitted everything
    /// it can for now and waits for replies; an attempt that cannot be sent is answered
    /// [`ClusterReply::Refused`].
    fn flush(&mut self) {}

    /// Where the replies come, in the order the cluster gives them.
    fn replies(&mut self) -> &mut tokio::sync::mpsc::UnboundedReceiver<ClusterReply>;

    /// The run was cancelled: nothing sent will be waited for.
    fn cancel(&mut self);
}

/// What a cluster answers.
#[derive(Debug, PartialEq)]
pub enum ClusterReply {
    /// The attempt of this ticket ended.
    Ended(u32, crate::wire::WireEnd),
    /// The attempt of this ticket returned a value the cluster keeps (the coordinator
    /// did not ask for it back): a reference to it, with its length when it is a list.
    Held(u32, crate::value::RemoteRef),
    /// A finished attempt of this ticket ran again on the cluster: its result was lost
    /// with a worker while a task still needed it.
    Recomputed(u32),
    /// The attempt of this ticket did not run (a worker process that died, a task the
    /// worker does not know): it ends `Failed` with the message and is retried like any
    /// failure.
    Refused(u32, String),
    /// The connection is gone (the bridge or the scheduler went away): every attempt in
    /// flight ends `Failed` with the message.
    Lost(String),
    /// What the attempt of this ticket logged on its worker, before its end.
    Logs(u32, Vec<crate::worker::frame::LogLine>),
}

/// A [`Cluster`] as an [`Executor`]: shared by every flow run that uses it.
#[derive(Clone)]
pub struct ClusterExecutor(std::sync::Arc<dyn Cluster>);

impl ClusterExecutor {
    /// Wraps a cluster.
    pub fn new(cluster: impl Cluster) -> Self {
        ClusterExecutor(std::sync::Arc::new(cluster))
    }

    pub(crate) fn cluster(&self) -> &dyn Cluster {
        &*self.0
    }
}

impl std::fmt::Debug for ClusterExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.describe())
    }
}

impl PartialEq for ClusterExecutor {
    /// The same cluster value.
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ClusterExecutor {}

impl From<ClusterExecutor> for Executor {
    fn from(e: ClusterExecutor) -> Self {
        Executor::Cluster(e)
    }
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
