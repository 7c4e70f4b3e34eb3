//! The end of a run: unfinished task runs settled, the flow's state and output, and the
//! run record.

use super::*;

impl Scheduler {
    /// Builds the run record: final flow state, output, and one task run per node.
    pub(super) fn finish(&mut self, s: &Static, started_at: SystemTime) -> RunRecord {
        let now = SystemTime::now();
        // Task runs that never ended: cancelled ones, or (a cycle in a hand-built graph,
        // a lost task run) ones that fail the flow whatever its reference tasks.
        const NEVER: &str = "never ran: the flow run ended before its upstream tasks were final";
        let unusable = self.unusable.clone();
        let unfinished = |cancelled: bool| {
            if cancelled {
                State::Cancelled {
                    message: CANCELLED.to_owned(),
                }
            } else if let Some(why) = &unusable {
                State::Failed {
                    message: format!("never ran: {why}"),
                }
            } else {
                State::Failed {
                    message: NEVER.to_owned(),
                }
            }
        };
        let mut incomplete = false;
        for x in 0..self.nodes.len() {
            if !self.nodes[x].finished && !self.nodes[x].expanded {
                incomplete = true;
                self.nodes[x].ended_at = Some(now);
                self.set(s, UpId::own(x), 0, unfinished(self.cancelled), Stamp::Wall(now));
            }
            for i in 0..self.nodes[x].children.len() {
                if !self.nodes[x].children[i].state.is_finished() {
                    incomplete = true;
                    self.nodes[x].children[i].ended_at = Some(now);
                    self.set(
                        s,
                        UpId::child(x, i),
                        0,
                        unfinished(self.cancelled),
                        Stamp::Wall(now),
                    );
                }
            }
        }

        let is_failed = |n: &NodeRun| n.state.is_failed() || n.children.iter().any(|c| c.state.is_failed());
        let reference: Vec<usize> = match &s.options.reference {
            Some(ids) => ids.iter().map(|id| id.index()).collect(),
            None => (0..s.plans.len()).filter(|&x| s.plans[x].terminal).collect(),
        };
        let failed = incomplete
            || reference
                .iter()
                .any(|&x| self.nodes.get(x).is_some_and(is_failed));
        let state = if self.cancelled {
            State::Cancelled {
                message: "cancelled while it ran".to_owned(),
            }
        } else if let Some(why) = &self.unusable {
            State::Failed { message: why.clone() }
        } else if failed {
            State::Failed {
                message: failure_message(s, &self.nodes),
            }
        } else {
            State::Success
        };
        let output = match (&s.graph.output, &state) {
            (Some(src), State::Success) => self.eval(s, src, false).ok().and_then(|d| d.into_local().ok()),
            _ => None,
        };
        let failed_tasks = if state.is_failed() {
            failed_task_runs(s, &self.nodes)
        } else {
            Vec::new()
        };
        self.tr.flow(state.clone(), failed_tasks);

        let nodes = std::mem::take(&mut self.nodes);
        let tasks = nodes
            .into_iter()
            .enumerate()
            .map(|(x, n)| {
                let plan = &s.plans[x];
                let task_name = s.graph.nodes[x].task.name;
                let keep = plan.keep;
                // The children's records become the run's as they are: no copy of a
                // million-child map at the end of the run.
                let mut children = n.children;
                if !keep {
                    for c in &mut children {
                        c.result = None;
                    }
                }
                TaskRun {
                    name: Arc::clone(&plan.name),
                    task_name,
                    state: n.state,
                    attempts: n.attempts,
                    started_at: n.started_at,
                    ended_at: n.ended_at,
                    result: if keep { n.result } else { None },
                    children,
                    subflows: n.subflows,
                }
            })
            .collect();
        let mut warnings = s
            .run_store
            .as_ref()
            .map(|r| r.take_warnings())
            .unwrap_or_default();
        let recomputed = self.backend.recomputed();
        if recomputed > 0 {
            warnings.push(format!(
                "{recomputed} finished task run(s) ran again on the cluster: their results were lost \
                 with a worker while tasks downstream still needed them"
            ));
        }
        RunRecord {
            warnings,
            recomputed,
            id: s.flow_run,
            parent: s.options.parent,
            flow: s.graph.name,
            state,
            tasks,
            output,
            started_at,
            ended_at: SystemTime::now(),
        }
    }
}

/// The full names of the failed task runs (mapped children included), in graph order.
pub(super) fn failed_task_runs(s: &Static, nodes: &[NodeRun]) -> Vec<String> {
    let mut names = Vec::new();
    for (x, n) in nodes.iter().enumerate() {
        if n.state.is_failed() {
            names.push(s.name(UpId::own(x)).to_string());
        }
        for (i, c) in n.children.iter().enumerate() {
            if c.state.is_failed() {
                names.push(s.name(UpId::child(x, i)).to_string());
            }
        }
    }
    names
}

/// "failed task runs: `t1` (Failed: boom), `t2` (TriggerFailed)".
pub(super) fn failure_message(s: &Static, nodes: &[NodeRun]) -> String {
    let mut list = String::new();
    let mut count = 0usize;
    let mut note = |u: UpId, state: &State| {
        if count < LISTED {
            if count > 0 {
                list.push_str(", ");
            }
            let _ = match state {
                State::Failed { message } => write!(list, "`{}` (Failed: {message})", s.name(u)),
                other => write!(list, "`{}` ({})", s.name(u), other.name()),
            };
        }
        count += 1;
    };
    for (x, n) in nodes.iter().enumerate() {
        if n.state.is_failed() {
            note(UpId::own(x), &n.state);
        }
        for (i, c) in n.children.iter().enumerate() {
            if c.state.is_failed() {
                note(UpId::child(x, i), &c.state);
            }
        }
    }
    if count > LISTED {
        let _ = write!(list, " and {} more", count - LISTED);
    }
    format!("failed task runs: {list}")
}
