//! Result store reads and writes, off the scheduler's thread: one worker per run takes
//! them in the order the scheduler asked for them, so a run uses one thread for its store
//! however wide its maps, and what it reports comes in a stable order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tracing::Dispatch;

/// A piece of store work, giving back what the scheduler reads.
pub(super) type Work<T> = Box<dyn FnOnce() -> T + Send>;

/// The store worker of one run.
pub(super) struct StoreWork<T> {
    shared: Arc<Mutex<Queue<T>>>,
    tx: UnboundedSender<T>,
    rx: UnboundedReceiver<T>,
    dispatch: Dispatch,
    /// Pieces of work pushed and not read back yet.
    pending: usize,
}

struct Queue<T> {
    work: VecDeque<Work<T>>,
    /// A worker thread is taking work.
    active: bool,
}

fn lock<T>(m: &Mutex<Queue<T>>) -> MutexGuard<'_, Queue<T>> {
    // The lock is never held while store work runs.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Send + 'static> StoreWork<T> {
    /// Store work logs to `dispatch`, the subscriber where the run started.
    pub(super) fn new(dispatch: Dispatch) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        StoreWork {
            shared: Arc::new(Mutex::new(Queue {
                work: VecDeque::new(),
                active: false,
            })),
            tx,
            rx,
            dispatch,
            pending: 0,
        }
    }

    /// Queues `work`; what it gives back comes out of [`StoreWork::next`].
    pub(super) fn push(&mut self, work: Work<T>) {
        self.pending += 1;
        let start = {
            let mut q = lock(&self.shared);
            q.work.push_back(work);
            !std::mem::replace(&mut q.active, true)
        };
        if start {
            let shared = Arc::clone(&self.shared);
            let tx = self.tx.clone();
            let dispatch = self.dispatch.clone();
            // The worker exits when the queue is empty; it is not awaited: a run that
            // ends (or is cancelled) does not wait for a write it no longer needs.
            drop(tokio::task::spawn_blocking(move || {
                tracing::dispatcher::with_default(&dispatch, || loop {
                    let next = {
                        let mut q = lock(&shared);
                        match q.work.pop_front() {
                            Some(w) => w,
                            None => {
                                q.active = false;
                                return;
                            }
                        }
                    };
                    if tx.send(next()).is_err() {
                        return;
                    }
                })
            }));
        }
    }

    /// What the next piece of work gave back.
    pub(super) async fn next(&mut self) -> Option<T> {
        let next = self.rx.recv().await;
        self.pending -= usize::from(next.is_some());
        next
    }

    /// How many pieces of work were pushed and not read back yet.
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    /// Drops the work not started yet (nothing is read back after this).
    pub(super) fn clear(&mut self) {
        let work = std::mem::take(&mut lock(&self.shared).work);
        drop(work);
        self.pending = 0;
    }
}
