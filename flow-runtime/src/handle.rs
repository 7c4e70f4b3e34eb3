//! A flow run you can hold: started in the background, watched, cancelled, awaited.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::context::FlowRunId;
use crate::engine::Control;
use crate::event::{Delivery, Subscription};
use crate::run::{FlowRun, RunRecord};

/// A flow run started with [`Flow::start`](crate::Flow::start): it runs on tokio while
/// you hold this handle. Await it for the [`FlowRun`], as [`Flow::run`](crate::Flow::run)
/// gives; [`RunHandle::cancel`] stops it; [`RunHandle::subscribe`] watches it.
///
/// Dropping the handle (or the future awaiting it) cancels the run, as dropping any
/// future cancels its work.
///
/// The `tideflow` crate's documentation shows one at work.
pub struct RunHandle<O> {
    id: FlowRunId,
    control: UnboundedSender<Control>,
    join: Option<JoinHandle<RunRecord>>,
    _output: PhantomData<fn() -> O>,
}

impl<O> fmt::Debug for RunHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<O: 'static> RunHandle<O> {
    pub(crate) fn new(id: FlowRunId, control: UnboundedSender<Control>, join: JoinHandle<RunRecord>) -> Self {
        RunHandle {
            id,
            control,
            join: Some(join),
            _output: PhantomData,
        }
    }

    /// The run's id.
    pub fn id(&self) -> FlowRunId {
        self.id
    }

    /// Stops the run: task runs that have not started end `Cancelled` and never start,
    /// running async attempts are dropped at their next await point, running sync ones
    /// are abandoned (they cannot be stopped mid-call; their result is discarded) and end
    /// `Cancelled`; the flow run ends `Cancelled`. A run that already ended is unchanged.
    pub fn cancel(&self) {
        let _ = self.control.send(Control::Cancel);
    }

    /// Watches the run from now on: its events arrive in order, delivered as `delivery`
    /// says. To see every event of a run from its start, subscribe on the flow before it
    /// starts ([`Flow::subscribe`](crate::Flow::subscribe)).
    pub fn subscribe(&self, delivery: Delivery) -> Subscription {
        let (subscriber, subscription) = Subscription::new(delivery);
        let _ = self.control.send(Control::Subscribe(subscriber));
        subscription
    }

    /// The same handle, for another output type (the run's output is never read as it).
    pub(crate) fn retype<P>(mut self) -> RunHandle<P> {
        RunHandle {
            id: self.id,
            control: self.control.clone(),
            join: self.join.take(),
            _output: PhantomData,
        }
    }

    /// The channel that tells the run to stop.
    pub(crate) fn control(&self) -> UnboundedSender<Control> {
        self.control.clone()
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl<O> Drop for RunHandle<O> {
    fn drop(&mut self) {
        if self.join.is_some() {
            let _ = self.control.send(Control::Cancel);
        }
    }
}

/// The future of a [`RunHandle`]: the run's result once it ends.
pub struct RunFuture<O> {
    handle: RunHandle<O>,
}

impl<O> fmt::Debug for RunFuture<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunFuture").field("id", &self.handle.id).finish()
    }
}

impl<O: 'static> IntoFuture for RunHandle<O> {
    type Output = FlowRun<O>;
    type IntoFuture = RunFuture<O>;

    fn into_future(self) -> Self::IntoFuture {
        RunFuture { handle: self }
    }
}

impl<O: 'static> Future for RunFuture<O> {
    type Output = FlowRun<O>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(join) = this.handle.join.as_mut() else {
            panic!("a RunFuture polled after it completed");
        };
        match Pin::new(join).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(joined) => {
                this.handle.join = None;
                match joined {
                    Ok(record) => Poll::Ready(FlowRun::new(record)),
                    // The engine's own panic (a bug) is the caller's, as with `Flow::run`.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => panic!("the flow run's task was stopped: {e}"),
                }
            }
        }
    }
}
