//! The cluster backend: attempts go to a [`ClusterConnection`] in their wire form; what
//! cannot cross (local tasks, subflows, the gates and merges of an `if`) runs on a local
//! backend beside it.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use futures::FutureExt as _;

use tracing::Span;

use super::{Attempt, AttemptEnd, Ended, LocalBackend, Report, Runner, Submitted};
use crate::error::SignalKind;
use crate::executor::{ClusterConnection, ClusterReply};
use crate::task::{TaskBody, TaskDef};
use crate::value::Data;
use crate::worker::frame::LogLine;

/// Runs attempts on a cluster.
pub(crate) struct ClusterBackend {
    conn: Box<dyn ClusterConnection>,
    /// What cannot cross a process runs here.
    local: LocalBackend,
    /// Attempts on the cluster, by ticket: their task (to read their result), start, and
    /// span (what their bodies log on the workers is logged in it here).
    away: HashMap<u32, (&'static TaskDef, Instant, Span)>,
    runner: Runner,
    /// Ends to report without waiting: attempts failed by a lost connection.
    ready: VecDeque<Ended>,
    /// The connection is gone: every later attempt fails with this message.
    lost: Option<String>,
    /// Finished attempts the cluster ran again (results lost with a worker).
    recomputed: u32,
}

/// A task whose attempts run in this process whatever the executor: a local task (its
/// values cannot leave it), a subflow, the gate or merge of an `if`.
pub(crate) fn runs_here(def: &TaskDef) -> bool {
    def.codec.is_none() || matches!(def.body, TaskBody::Subflow(_))
}

impl ClusterBackend {
    pub(super) fn new(conn: Box<dyn ClusterConnection>, local: LocalBackend, runner: Runner) -> Self {
        ClusterBackend {
            conn,
            local,
            runner,
            away: HashMap::new(),
            ready: VecDeque::new(),
            lost: None,
            recomputed: 0,
        }
    }

    pub(super) fn max_concurrency(&self) -> usize {
        self.conn.max_concurrency().max(1)
    }

    pub(super) fn submit(&mut self, attempt: Attempt) -> Submitted {
        let def = attempt.def;
        if runs_here(def) {
            return self.local.submit(attempt);
        }
        let failed = |message: String| {
            Submitted::Ran(Ended {
                ticket: attempt.ticket,
                started: Instant::now(),
                ended: Instant::now(),
                end: AttemptEnd::Failed {
                    message,
                    signal: SignalKind::Fail,
                    retry_wanted: false,
                },
                subflow: None,
            })
        };
        if let Some(message) = &self.lost {
            return failed(message.clone());
        }
        let wire = match attempt.to_wire() {
            Ok(w) => w,
            Err(e) => return failed(format!("the attempt cannot be sent to the cluster: {e}")),
        };
        if let Err(e) = self.conn.submit(&wire) {
            return failed(format!("the attempt cannot be sent to the cluster: {e}"));
        }
        let span = self.runner.span(&attempt.ctx);
        self.away.insert(attempt.ticket, (def, Instant::now(), span));
        Submitted::Started
    }

    pub(super) async fn next(&mut self) -> Report {
        // The scheduler submitted all it could: what the connection kept back goes now.
        self.conn.flush();
        loop {
            if let Some(ended) = self.ready.pop_front() {
                return Report::Ended(ended);
            }
            let reply = if self.away.is_empty() {
                None
            } else {
                tokio::select! {
                    biased;
                    r = self.conn.replies().recv() => Some(r),
                    report = self.local.next() => return report,
                }
            };
            match reply {
                None => return self.local.next().await,
                Some(reply) => {
                    if let Some(report) = self.reply(reply) {
                        return report;
                    }
                }
            }
        }
    }

    /// A report from the local backend's pool, or a cluster reply, that is ready now.
    pub(super) fn try_next_pooled(&mut self) -> Option<Report> {
        if let Some(report) = self.local.try_next_pooled() {
            return Some(report);
        }
        if let Some(ended) = self.ready.pop_front() {
            return Some(Report::Ended(ended));
        }
        while !self.away.is_empty() {
            let reply = self.conn.replies().recv().now_or_never()?;
            if let Some(report) = self.reply(reply) {
                return Some(report);
            }
        }
        None
    }

    pub(super) fn try_next_async(&mut self) -> Option<Report> {
        self.local.try_next_async()
    }

    /// A cluster reply, as the end of its attempt.
    fn reply(&mut self, reply: Option<ClusterReply>) -> Option<Report> {
        let failed = |message: String| AttemptEnd::Failed {
            message,
            signal: SignalKind::Fail,
            retry_wanted: true,
        };
        let (ticket, end) = match reply {
            Some(ClusterReply::Logs(ticket, lines)) => {
                let (_, _, span) = self.away.get(&ticket)?;
                span.in_scope(|| lines.iter().for_each(relog));
                return None;
            }
            Some(ClusterReply::Ended(ticket, wire)) => {
                let (def, _, _) = self.away.get(&ticket)?;
                let end = AttemptEnd::from_wire(wire, def)
                    .unwrap_or_else(|e| failed(format!("the result from the cluster cannot be read: {e}")));
                (ticket, end)
            }
            Some(ClusterReply::Held(ticket, held)) => {
                self.away.get(&ticket)?;
                (ticket, AttemptEnd::Returned(Data::remote(held).into_raw()))
            }
            Some(ClusterReply::Recomputed(ticket)) => {
                self.recomputed += 1;
                tracing::warn!(
                    target: "tideflow",
                    ticket,
                    "a finished task run's result was lost with a worker of the cluster and computed again"
                );
                return None;
            }
            Some(ClusterReply::Refused(ticket, message)) => (ticket, failed(message)),
            Some(ClusterReply::Lost(message)) => return self.lose(message),
            None => return self.lose("the cluster connection closed".to_owned()),
        };
        let (_, started, _) = self.away.remove(&ticket)?;
        Some(Report::Ended(Ended {
            ticket,
            started,
            ended: Instant::now(),
            end,
            subflow: None,
        }))
    }

    /// The connection is gone: every attempt on the cluster fails with `message`.
    fn lose(&mut self, message: String) -> Option<Report> {
        tracing::error!(target: "tideflow", error = %message, "lost the cluster");
        let now = Instant::now();
        for (ticket, (_, started, _)) in self.away.drain() {
            self.ready.push_back(Ended {
                ticket,
                started,
                ended: now,
                end: AttemptEnd::Failed {
                    message: message.clone(),
                    signal: SignalKind::Fail,
                    retry_wanted: false,
                },
                subflow: None,
            });
        }
        self.lost = Some(message);
        self.ready.pop_front().map(Report::Ended)
    }

    pub(super) fn recomputed(&self) -> u32 {
        self.recomputed
    }

    pub(super) fn cancel(&mut self) -> Vec<u32> {
        self.conn.cancel();
        self.away.clear();
        self.ready.clear();
        self.local.cancel()
    }

    pub(super) async fn close(self) {
        self.local.close().await;
    }
}

/// Logs here, in the current span, a line a task body logged on a worker.
fn relog(line: &LogLine) {
    let (target, text) = (line.target.as_str(), line.text.as_str());
    match line.level {
        1 => tracing::error!(target: "tideflow::worker", origin = target, "{text}"),
        2 => tracing::warn!(target: "tideflow::worker", origin = target, "{text}"),
        3 => tracing::info!(target: "tideflow::worker", origin = target, "{text}"),
        4 => tracing::debug!(target: "tideflow::worker", origin = target, "{text}"),
        _ => tracing::trace!(target: "tideflow::worker", origin = target, "{text}"),
    }
}
