//! Backends run attempts and report how they ended; the scheduler decides everything else.
//!
//! An [`Attempt`] is one try at running one task run's body: the task, its inputs, its
//! context and its timeout. A backend runs it where it runs things and answers with
//! [`Report`]s: `Started` when the body starts (only when someone observes the run),
//! then `Ended` with an [`AttemptEnd`], plain data (a panic is its message). A backend
//! does not know what a retry, a trigger, a cache or a tag limit is.
//!
//! The backends are an enum, not trait objects: the local one is on the microsecond path.
//! The form of an attempt and of its end that can cross a process is in
//! [`super::wire`].

mod cluster;
mod local;
mod sequential;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tracing::{Instrument as _, Span};

pub(crate) use self::cluster::runs_here;
use self::cluster::ClusterBackend;
pub(crate) use self::local::LocalBackend;
pub(crate) use self::sequential::SequentialBackend;
use super::Inherited;
use crate::context::TaskContext;
use crate::error::{SignalKind, TaskError};
use crate::executor::Executor;
use crate::graph::Graph;
use crate::run::RunRecord;
use crate::task::{AsyncBody, BoxFuture, SubflowBody, SyncBody, TaskBody, TaskDef};
use crate::value::Value;

/// One attempt of one task run, as the scheduler hands it to a backend.
pub(crate) struct Attempt {
    /// The scheduler's handle on the task run; reports carry it back.
    pub(crate) ticket: u32,
    /// The task.
    pub(crate) def: &'static TaskDef,
    /// One value per data parameter, in order.
    pub(crate) inputs: Vec<Value>,
    /// What the body may read of its run (ids, attempt, parameters).
    pub(crate) ctx: TaskContext,
    /// How long the attempt may run.
    pub(crate) timeout: Option<Duration>,
    /// Which errors the task wants retried: asked where the error is (the error itself
    /// cannot cross a process), the answer travels in [`AttemptEnd::Failed`].
    pub(crate) retry_on: Option<fn(&TaskError) -> bool>,
    /// Report `Started` when the body starts (someone observes the run).
    pub(crate) report_start: bool,
    /// The result is needed in this process (see [`super::wire::WireAttempt::result_here`]).
    pub(crate) result_here: bool,
}

/// How an attempt ended: plain data.
#[derive(Debug)]
pub(crate) enum AttemptEnd {
    /// The body returned a value.
    Returned(Value),
    /// The body returned an error or a signal.
    Failed {
        /// The error's message, with its chain of sources.
        message: String,
        /// Fail, skip or retry.
        signal: SignalKind,
        /// The task's `retry_on` wants this error retried (`true` without a `retry_on`).
        retry_wanted: bool,
    },
    /// The body panicked: its message.
    Panicked(String),
    /// The attempt ran past its timeout: an async body was dropped, a sync one abandoned.
    TimedOut(Duration),
}

/// What a backend tells the scheduler.
pub(crate) enum Report {
    /// The body of the attempt of `ticket` started at `at` (only with `report_start`).
    Started { ticket: u32, at: Instant },
    /// The attempt ended.
    Ended(Ended),
}

/// The end of an attempt.
pub(crate) struct Ended {
    pub(crate) ticket: u32,
    /// When the body started and when the attempt ended.
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
    pub(crate) end: AttemptEnd,
    /// A subflow's flow run (local backends only).
    pub(crate) subflow: Option<Arc<RunRecord>>,
}

/// What `submit` did with an attempt.
pub(crate) enum Submitted {
    /// It ran to its end right away (a short sync body, run inline).
    Ran(Ended),
    /// It started now (an async body).
    Started,
    /// It waits for a thread; `Started` is reported when it starts, if asked for.
    Queued,
}

/// The backends.
// One per run, built once and never moved on the hot path; a box would add an
// indirection to every attempt instead.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    /// See [`LocalBackend`].
    Local(LocalBackend),
    /// See [`SequentialBackend`].
    Sequential(SequentialBackend),
    /// See [`ClusterBackend`].
    Cluster(ClusterBackend),
}

impl Backend {
    /// The backend an executor stands for, for one run of `graph`.
    ///
    /// # Errors
    /// A cluster that cannot be used: why.
    pub(crate) fn new(
        executor: &Executor,
        graph: &Graph,
        span: Span,
        inherited: Option<Arc<Inherited>>,
    ) -> Result<Self, String> {
        let runner = Runner { span, inherited };
        Ok(match executor {
            Executor::Local(e) => Backend::Local(LocalBackend::new(e, graph, runner)),
            Executor::Sequential => Backend::Sequential(SequentialBackend::new(runner)),
            Executor::Cluster(c) => {
                let conn = c
                    .cluster()
                    .open()
                    .map_err(|e| format!("cannot use the cluster ({}): {e}", c.cluster().describe()))?;
                let local = LocalBackend::new(&crate::LocalExecutor::new(), graph, runner.clone());
                Backend::Cluster(ClusterBackend::new(conn, local, runner))
            }
        })
    }

    /// At most this many task runs in flight at once.
    pub(crate) fn max_concurrency(&self) -> usize {
        match self {
            Backend::Local(b) => b.max_concurrency(),
            Backend::Sequential(_) => 1,
            Backend::Cluster(b) => b.max_concurrency(),
        }
    }

    /// Starts an attempt.
    #[inline]
    pub(crate) fn submit(&mut self, attempt: Attempt) -> Submitted {
        match self {
            Backend::Local(b) => b.submit(attempt),
            Backend::Sequential(b) => b.submit(attempt),
            Backend::Cluster(b) => b.submit(attempt),
        }
    }

    /// The next report; pending while nothing runs.
    pub(crate) async fn next(&mut self) -> Report {
        match self {
            Backend::Local(b) => b.next().await,
            Backend::Sequential(b) => b.next().await,
            Backend::Cluster(b) => b.next().await,
        }
    }

    /// A report from a thread of the backend's pool that is ready now, if any.
    #[inline]
    pub(crate) fn try_next_pooled(&mut self) -> Option<Report> {
        match self {
            Backend::Local(b) => b.try_next_pooled(),
            Backend::Sequential(_) => None,
            Backend::Cluster(b) => b.try_next_pooled(),
        }
    }

    /// The end of an async attempt that is ready now, if any.
    #[inline]
    pub(crate) fn try_next_async(&mut self) -> Option<Report> {
        match self {
            Backend::Local(b) => b.try_next_async(),
            Backend::Sequential(_) => None,
            Backend::Cluster(b) => b.try_next_async(),
        }
    }

    /// Drops every attempt: queued ones never start, running async ones are dropped,
    /// running sync ones abandoned. Nothing is reported after this. Gives the tickets of
    /// the attempts that never started.
    pub(crate) fn cancel(&mut self) -> Vec<u32> {
        match self {
            Backend::Local(b) => b.cancel(),
            Backend::Sequential(b) => {
                b.cancel();
                Vec::new()
            }
            Backend::Cluster(b) => b.cancel(),
        }
    }

    /// How many finished attempts a cluster ran again because their results were lost
    /// with a worker while still needed.
    pub(crate) fn recomputed(&self) -> u32 {
        match self {
            Backend::Cluster(b) => b.recomputed(),
            _ => 0,
        }
    }

    /// Waits for the backend's own helpers (idle pool workers) once nothing runs; an
    /// abandoned sync attempt is not waited for.
    pub(crate) async fn close(self) {
        match self {
            Backend::Local(b) => b.close().await,
            Backend::Sequential(b) => b.close().await,
            Backend::Cluster(b) => b.close().await,
        }
    }
}

/// What every local backend needs to run a body: the flow run's span (the parent of each
/// attempt's span) and, for subflows, what they inherit from this run.
#[derive(Clone)]
pub(crate) struct Runner {
    span: Span,
    inherited: Option<Arc<Inherited>>,
}

impl Runner {
    /// Runs bodies under `span`; subflows inherit `inherited`.
    pub(crate) fn new(span: Span, inherited: Option<Arc<Inherited>>) -> Self {
        Runner { span, inherited }
    }

    /// The span an attempt runs in: its task run, attempt and ids, so that a subscriber
    /// files the body's log lines under their task run.
    pub(crate) fn span(&self, ctx: &TaskContext) -> Span {
        tracing::info_span!(
            parent: &self.span,
            "task_run",
            task = %ctx.binding,
            map_index = ctx.id.map_index,
            attempt = ctx.attempt,
            flow_run_id = %ctx.id.flow_run,
            task_run_id = %ctx.id,
        )
    }

    /// Runs one attempt of a sync body on this thread.
    pub(crate) fn run_sync(&self, attempt: Attempt, body: SyncBody) -> Ended {
        let span = self.span(&attempt.ctx);
        let _entered = span.enter();
        // Logged here, where the body starts, so that it comes before the body's own lines.
        tracing::info!(target: "tideflow", "Running");
        let started = Instant::now();
        let ctx = &attempt.ctx;
        let returned = panic::catch_unwind(AssertUnwindSafe(|| body(attempt.inputs, ctx)));
        let ended = Instant::now();
        let end = match returned {
            Ok(r) => returned_end(r, attempt.retry_on),
            Err(payload) => AttemptEnd::Panicked(panic_message(&*payload)),
        };
        Ended {
            ticket: attempt.ticket,
            started,
            ended,
            end,
            subflow: None,
        }
    }

    /// The future of one attempt of an async body (or a subflow), cancelled at the
    /// attempt's timeout.
    pub(crate) fn run_async(&self, attempt: Attempt) -> BoxedEnded {
        let span = self.span(&attempt.ctx);
        match attempt.def.body {
            TaskBody::Async(body) => Box::pin(async_run(attempt, body, span)),
            TaskBody::Subflow(body) => Box::pin(subflow_run(attempt, body, span, self.inherited.clone())),
            TaskBody::Sync(body) => {
                // Only for a backend that chose to run a sync body off its own thread.
                let ended = self.run_sync(attempt, body);
                Box::pin(std::future::ready(ended))
            }
        }
    }
}

/// A boxed attempt future.
pub(crate) type BoxedEnded = std::pin::Pin<Box<dyn std::future::Future<Output = Ended> + Send>>;

/// One attempt of an async body.
async fn async_run(attempt: Attempt, body: AsyncBody, span: Span) -> Ended {
    let Attempt {
        ticket,
        inputs,
        ctx,
        timeout,
        retry_on,
        ..
    } = attempt;
    let started = Instant::now();
    let end = async_attempt(body, inputs, ctx, timeout, retry_on, span).await;
    Ended {
        ticket,
        started,
        ended: Instant::now(),
        end,
        subflow: None,
    }
}

/// One attempt of a subflow: its own flow run, kept beside the result.
async fn subflow_run(
    attempt: Attempt,
    body: SubflowBody,
    span: Span,
    inherited: Option<Arc<Inherited>>,
) -> Ended {
    let Attempt {
        ticket,
        inputs,
        ctx,
        timeout,
        ..
    } = attempt;
    let started = Instant::now();
    let (end, subflow) = subflow_attempt(body, inputs, ctx, timeout, span, inherited).await;
    Ended {
        ticket,
        started,
        ended: Instant::now(),
        end,
        subflow,
    }
}

async fn async_attempt(
    body: AsyncBody,
    inputs: Vec<Value>,
    ctx: TaskContext,
    timeout: Option<Duration>,
    retry_on: Option<fn(&TaskError) -> bool>,
    span: Span,
) -> AttemptEnd {
    span.in_scope(|| tracing::info!(target: "tideflow", "Running"));
    let fut = match panic::catch_unwind(AssertUnwindSafe(|| body(inputs, ctx))) {
        Ok(fut) => fut,
        Err(payload) => return AttemptEnd::Panicked(panic_message(&*payload)),
    };
    guarded(fut, timeout, retry_on, span).await
}

/// Polls a body's future, catching its panic, dropped at `timeout`.
async fn guarded(
    fut: BoxFuture,
    timeout: Option<Duration>,
    retry_on: Option<fn(&TaskError) -> bool>,
    span: Span,
) -> AttemptEnd {
    let guarded = AssertUnwindSafe(fut).catch_unwind().instrument(span);
    let finished = match timeout {
        // Dropping the future at the timeout cancels it: nothing after its next await
        // point runs.
        Some(limit) => tokio::time::timeout(limit, guarded).await.map_err(|_| limit),
        None => Ok(guarded.await),
    };
    match finished {
        Ok(Ok(returned)) => returned_end(returned, retry_on),
        Ok(Err(payload)) => AttemptEnd::Panicked(panic_message(&*payload)),
        Err(limit) => AttemptEnd::TimedOut(limit),
    }
}

/// Runs a subflow's flow run as one attempt, with what it inherits from this run.
async fn subflow_attempt(
    body: SubflowBody,
    inputs: Vec<Value>,
    ctx: TaskContext,
    timeout: Option<Duration>,
    span: Span,
    inherited: Option<Arc<Inherited>>,
) -> (AttemptEnd, Option<Arc<RunRecord>>) {
    span.in_scope(|| tracing::info!(target: "tideflow", "Running"));
    let fut = match panic::catch_unwind(AssertUnwindSafe(|| body(inputs, ctx))) {
        Ok(fut) => fut,
        Err(payload) => return (AttemptEnd::Panicked(panic_message(&*payload)), None),
    };
    // The subflow's run comes back beside its result.
    let (tx, rx) = std::sync::mpsc::channel();
    let fut: BoxFuture = Box::pin(async move {
        let outcome = fut.await;
        let _ = tx.send(outcome.run);
        outcome.result
    });
    let end = match inherited {
        Some(inherited) => super::with_parent(inherited, guarded(fut, timeout, None, span)).await,
        None => guarded(fut, timeout, None, span).await,
    };
    (end, rx.try_recv().ok().flatten())
}

/// The size of the future of one async attempt (a test keeps it under glibc's per-thread
/// allocation cache: 1 KiB).
#[cfg(test)]
pub(crate) fn async_future_size(attempt: Attempt) -> usize {
    let runner = Runner::new(Span::none(), None);
    let span = runner.span(&attempt.ctx);
    match attempt.def.body {
        TaskBody::Async(body) => std::mem::size_of_val(&async_run(attempt, body, span)),
        _ => 0,
    }
}

/// The end of an attempt whose body returned.
fn returned_end(returned: Result<Value, TaskError>, retry_on: Option<fn(&TaskError) -> bool>) -> AttemptEnd {
    match returned {
        Ok(v) => AttemptEnd::Returned(v),
        Err(e) => AttemptEnd::Failed {
            retry_wanted: e.kind() == SignalKind::Fail && retry_on.is_none_or(|wanted| wanted(&e)),
            signal: e.kind(),
            message: e.message(),
        },
    }
}

/// The text of a panic payload, as a task run's failure message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("task panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("task panicked: {s}")
    } else {
        "task panicked".to_owned()
    }
}
