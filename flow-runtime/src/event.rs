//! The event stream of a flow run: every state change, in order, for whoever subscribes.
//!
//! Every state change of a flow run, of its task runs and of mapped children goes through
//! one place in the engine, which records it in the run, calls the state handlers and
//! publishes a [`RunEvent`] to each subscriber. A run history, a progress display and a
//! live dashboard are subscribers.
//!
//! A subscriber gets the events of a run in order (their [`RunEvent::seq`] counts up from
//! 1 per run) over a bounded queue, and chooses what happens when it falls behind:
//!
//! - [`Delivery::lossless`]: the run waits for room in the queue. Nothing is lost; a
//!   subscriber that stops reading stops the run (a run history writer).
//! - [`Delivery::lossy`]: events that do not fit are dropped and counted, and the
//!   subscriber is told how many it missed, where it missed them, with
//!   [`Received::Missed`] (a live view, which then re-reads what it shows).
//!
//! Nothing is ever dropped without saying so. A run nobody subscribes to builds no event.
//!
//! The `tideflow` crate's documentation shows a subscription at work.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::context::{FlowRunId, TaskRunId};
use crate::state::State;

/// One state change of a flow run or of one of its task runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    /// The event's position in its run: 1 for the first, then one more per event.
    pub seq: u64,
    /// The flow run.
    pub flow_run_id: FlowRunId,
    /// The flow's name.
    pub flow: String,
    /// The task run that changed state; `None` when the flow run itself did.
    pub task_run_id: Option<TaskRunId>,
    /// The task's name in the flow (its binding); `None` for the flow run.
    pub task: Option<Arc<str>>,
    /// The child's index, for a mapped child.
    pub map_index: Option<u32>,
    /// The attempt the change belongs to, counted from 1 (0 before the first attempt and
    /// for changes the scheduler decides without running the task, and for the flow run).
    pub attempt: u32,
    /// The state before the change.
    pub old: State,
    /// The state after it.
    pub new: State,
    /// When it happened.
    pub at: SystemTime,
    /// For a subflow's run, the parent's task run that runs it (set on the flow run's own
    /// events: those with no `task_run_id`).
    #[serde(default)]
    pub parent: Option<TaskRunId>,
}

impl RunEvent {
    /// `clean[3]` for a mapped child, `clean` for a task run, the flow's name for the
    /// flow run.
    pub fn name(&self) -> String {
        match (&self.task, self.map_index) {
            (Some(task), Some(i)) => format!("{task}[{i}]"),
            (Some(task), None) => task.to_string(),
            (None, _) => self.flow.clone(),
        }
    }

    /// The message of the new state (a failure's error, a skip's reason).
    pub fn message(&self) -> Option<&str> {
        self.new.message()
    }
}

/// How a subscriber receives events when it falls behind; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    lossless: bool,
    capacity: usize,
}

impl Delivery {
    /// Every event, in order: when the queue of `capacity` events is full, the run waits.
    pub fn lossless(capacity: usize) -> Self {
        Delivery {
            lossless: true,
            capacity: capacity.max(1),
        }
    }

    /// Events in order while there is room in the queue of `capacity` events; those that
    /// do not fit are dropped and reported as [`Received::Missed`].
    pub fn lossy(capacity: usize) -> Self {
        Delivery {
            lossless: false,
            capacity: capacity.max(1),
        }
    }

    /// Whether the run waits for this subscriber rather than drop events.
    pub fn is_lossless(&self) -> bool {
        self.lossless
    }
}

/// What a [`Subscription`] receives.
// Nearly every value is an event: boxing it would cost an allocation per event to save
// room in the rare `Missed`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// The next event.
    Event(RunEvent),
    /// This many events did not fit in a lossy subscriber's queue and were dropped here,
    /// between the event before and the event after.
    Missed(u64),
}

/// The receiving end of a subscription: events of every run it was attached to, in order.
pub struct Subscription {
    rx: mpsc::Receiver<Received>,
    /// Events missed after the last one queued, reported once the queue is drained and
    /// every run feeding it has ended.
    trailing: Arc<AtomicU64>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription and the sender the engine publishes to.
    pub(crate) fn new(delivery: Delivery) -> (Subscriber, Subscription) {
        let (tx, rx) = mpsc::channel(delivery.capacity);
        let trailing = Arc::new(AtomicU64::new(0));
        let subscriber = Subscriber {
            tx,
            lossless: delivery.lossless,
            missed: 0,
            trailing: Arc::clone(&trailing),
        };
        (subscriber, Subscription { rx, trailing })
    }

    /// The next event, waiting for it; `None` once every run it was attached to has ended
    /// (and every flow or handle that could attach it again is gone) and all was read.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.rx.recv().await {
            Some(r) => Some(r),
            None => self.trailing(),
        }
    }

    /// The next event, blocking the thread until it comes (for a subscriber on a thread
    /// of its own, outside any async runtime); `None` as for [`Subscription::recv`].
    ///
    /// # Panics
    /// When called from within an async runtime (use [`Subscription::recv`] there).
    pub fn blocking_recv(&mut self) -> Option<Received> {
        match self.rx.blocking_recv() {
            Some(r) => Some(r),
            None => self.trailing(),
        }
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Received> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(mpsc::error::TryRecvError::Disconnected) => self.trailing(),
            Err(mpsc::error::TryRecvError::Empty) => None,
        }
    }

    fn trailing(&mut self) -> Option<Received> {
        match self.trailing.swap(0, Ordering::AcqRel) {
            0 => None,
            n => Some(Received::Missed(n)),
        }
    }
}

/// The engine's end of one subscription.
#[derive(Debug)]
pub(crate) struct Subscriber {
    tx: mpsc::Sender<Received>,
    lossless: bool,
    /// Lossy: events dropped since the last one queued, reported before the next one.
    missed: u64,
    trailing: Arc<AtomicU64>,
}

impl Clone for Subscriber {
    /// Another run publishing to the same subscription (a flow run again).
    fn clone(&self) -> Self {
        Subscriber {
            tx: self.tx.clone(),
            lossless: self.lossless,
            missed: 0,
            trailing: Arc::clone(&self.trailing),
        }
    }
}

impl Subscriber {
    /// Delivers `event`. Lossless: waits for room. Returns `false` when the subscription
    /// was dropped (nobody reads any more).
    async fn deliver(&mut self, event: &RunEvent) -> bool {
        if self.lossless {
            return self.tx.send(Received::Event(event.clone())).await.is_ok();
        }
        if self.missed > 0 {
            match self.tx.try_send(Received::Missed(self.missed)) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed += 1;
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(Received::Event(event.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.missed += 1;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.missed > 0 {
            self.trailing.fetch_add(self.missed, Ordering::AcqRel);
        }
    }
}

/// At most this many events wait in a run's outbox before the scheduler stops starting
/// new work and delivers them.
pub(crate) const OUTBOX: usize = 1024;

/// A run's publishing side: the events built since the last delivery, and the
/// subscribers. With no subscriber, no event is built.
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    subscribers: Vec<Subscriber>,
    outbox: Vec<RunEvent>,
    seq: u64,
}

impl Publisher {
    pub(crate) fn new(subscribers: Vec<Subscriber>) -> Self {
        Publisher {
            subscribers,
            outbox: Vec::new(),
            seq: 0,
        }
    }

    /// Whether anyone listens (events are built only then).
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Attaches a subscriber from now on.
    pub(crate) fn attach(&mut self, subscriber: Subscriber) {
        self.subscribers.push(subscriber);
    }

    /// Queues an event; its `seq` is set here.
    pub(crate) fn publish(&mut self, mut event: RunEvent) {
        self.seq += 1;
        event.seq = self.seq;
        self.outbox.push(event);
    }

    /// Whether the outbox is full enough that the scheduler should deliver before it
    /// starts more work.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.outbox.len() >= OUTBOX
    }

    /// Delivers the queued events to every subscriber, in order, waiting for lossless
    /// ones; subscribers whose subscription was dropped are removed.
    pub(crate) async fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.outbox);
        let mut k = 0;
        while k < self.subscribers.len() {
            let mut open = true;
            for event in &events {
                if !self.subscribers[k].deliver(event).await {
                    open = false;
                    break;
                }
            }
            if open {
                k += 1;
            } else {
                self.subscribers.swap_remove(k);
            }
        }
        // Keep the allocation for the next batch.
        let mut events = events;
        events.clear();
        self.outbox = events;
    }
}
