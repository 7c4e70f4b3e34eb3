//! The sequential backend: one attempt at a time, sync bodies on the scheduler's thread,
//! for debugging and for tests that want a deterministic order.

use std::time::Instant;

use super::{Attempt, AttemptEnd, Ended, Report, Runner, Submitted};
use crate::task::TaskBody;

type Running = super::BoxedEnded;

/// Runs one attempt at a time (the scheduler keeps one task run in flight): a sync body
/// right where the scheduler is, an async body polled by the scheduler's task. A sync
/// attempt with a timeout runs on a blocking thread, so that it can be abandoned at its
/// deadline.
pub(crate) struct SequentialBackend {
    runner: Runner,
    running: Option<Running>,
}

impl SequentialBackend {
    pub(crate) fn new(runner: Runner) -> Self {
        SequentialBackend {
            runner,
            running: None,
        }
    }

    pub(super) fn submit(&mut self, attempt: Attempt) -> Submitted {
        match attempt.def.body {
            TaskBody::Sync(body) if attempt.timeout.is_none() => {
                Submitted::Ran(self.runner.run_sync(attempt, body))
            }
            TaskBody::Sync(body) => {
                let limit = attempt.timeout.unwrap_or_default();
                let ticket = attempt.ticket;
                let runner = self.runner.clone();
                let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
                let started = Instant::now();
                self.running = Some(Box::pin(async move {
                    let thread = tokio::task::spawn_blocking(move || {
                        tracing::dispatcher::with_default(&dispatch, || runner.run_sync(attempt, body))
                    });
                    // At the deadline the thread's handle is dropped: the attempt is
                    // abandoned, its late end discarded.
                    let end = match tokio::time::timeout(limit, thread).await {
                        Ok(Ok(ended)) => return ended,
                        Ok(Err(e)) => AttemptEnd::Panicked(format!("task panicked: {e}")),
                        Err(_) => AttemptEnd::TimedOut(limit),
                    };
                    Ended {
                        ticket,
                        started,
                        ended: Instant::now(),
                        end,
                        subflow: None,
                    }
                }));
                Submitted::Started
            }
            TaskBody::Async(_) | TaskBody::Subflow(_) => {
                self.running = Some(self.runner.run_async(attempt));
                Submitted::Started
            }
        }
    }

    pub(super) async fn next(&mut self) -> Report {
        let Some(running) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let ended = running.await;
        self.running = None;
        Report::Ended(ended)
    }

    pub(super) fn cancel(&mut self) {
        self.running = None;
    }

    /// Abandoned sync attempts cannot be stopped: they are not waited for.
    pub(super) async fn close(self) {}
}
