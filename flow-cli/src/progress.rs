//! Progress of a run on standard error: on a terminal, indicatif bars (one for the run,
//! task runs finished of those known; one per mapped task, its children done, failed and
//! retrying); off a terminal (CI, a pipe), a line at most every few seconds.
//!
//! Fed by a subscription to the run's events, on a thread of its own. Log lines written
//! while bars are drawn go through [`LogWriter`], which lifts the bars for them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flow_runtime::event::{Delivery, Received, RunEvent};
use flow_runtime::registry::DynFlow;
use flow_runtime::State;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars being drawn, if any: log lines lift them while they are written.
static BARS: OnceLock<Mutex<Option<MultiProgress>>> = OnceLock::new();

fn bars() -> &'static Mutex<Option<MultiProgress>> {
    BARS.get_or_init(|| Mutex::new(None))
}

/// Standard error for log lines, lifting the progress bars while a line is written.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let drawn = bars().lock().unwrap_or_else(PoisonError::into_inner).clone();
        match drawn {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Bars, on a terminal.
    Bars,
    /// A line at most every `every`.
    Lines { every: Duration },
}

impl Mode {
    /// Bars on a terminal, lines elsewhere (every `TIDEFLOW_PROGRESS_EVERY` seconds, 5 by
    /// default); `None` with `--quiet`.
    pub(crate) fn pick(quiet: bool) -> Option<Mode> {
        if quiet {
            return None;
        }
        if std::io::stderr().is_terminal() {
            return Some(Mode::Bars);
        }
        let every = std::env::var("TIDEFLOW_PROGRESS_EVERY")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .map_or(Duration::from_secs(5), Duration::from_secs_f64);
        Some(Mode::Lines { every })
    }
}

/// One mapped task's children.
#[derive(Default)]
struct Children {
    known: u64,
    done: u64,
    failed: u64,
    retrying: u64,
    bar: Option<ProgressBar>,
}

impl Children {
    fn message(&self) -> String {
        let mut parts = Vec::new();
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        if self.retrying > 0 {
            parts.push(format!("{} retrying", self.retrying));
        }
        parts.join(", ")
    }
}

/// What the events of a run said so far.
struct Tally {
    flow: &'static str,
    /// Task runs known: the flow's tasks that are not mapped, and mapped tasks' children.
    known: u64,
    finished: u64,
    mapped: BTreeMap<String, Children>,
}

/// The thread drawing a run's progress; [`Progress::finish`] clears it.
pub(crate) struct Progress {
    thread: JoinHandle<()>,
}

impl Progress {
    /// Follows the runs of `flow` in `mode`.
    pub(crate) fn start(flow: &mut DynFlow, mode: Mode) -> Progress {
        let plain = flow.graph().nodes.iter().filter(|n| !n.mapped).count() as u64;
        let name = flow.name();
        let mut events = flow.subscribe(Delivery::lossless(65_536));
        let thread = std::thread::spawn(move || {
            let mut tally = Tally {
                flow: name,
                known: plain,
                finished: 0,
                mapped: BTreeMap::new(),
            };
            let multi = match mode {
                Mode::Bars => {
                    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
                    *bars().lock().unwrap_or_else(PoisonError::into_inner) = Some(multi.clone());
                    Some(multi)
                }
                Mode::Lines { .. } => None,
            };
            let style = ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            let run_bar = multi.as_ref().map(|m| {
                let bar = m.add(ProgressBar::new(plain));
                bar.set_style(style.clone());
                bar.set_prefix("task runs");
                bar
            });
            let mut last_line = Instant::now();
            while let Some(received) = events.blocking_recv() {
                let Received::Event(event) = received else {
                    continue;
                };
                // The run's own end (a subflow's runs send theirs too).
                let ended = event.task.is_none() && event.flow == name && event.new.is_finished();
                count(&mut tally, &event, multi.as_ref(), &style);
                if let Some(bar) = &run_bar {
                    bar.set_length(tally.known);
                    bar.set_position(tally.finished);
                }
                if let Mode::Lines { every } = mode {
                    if last_line.elapsed() >= every && !ended {
                        last_line = Instant::now();
                        eprintln!("{}", line(&tally));
                    }
                }
                if ended {
                    break;
                }
            }
            if let Some(multi) = &multi {
                let _ = multi.clear();
            }
            *bars().lock().unwrap_or_else(PoisonError::into_inner) = None;
        });
        Progress { thread }
    }

    /// Waits for the drawing to end (the run's last event) and clears the bars.
    pub(crate) fn finish(self) {
        let _ = self.thread.join();
    }
}

/// Counts one event.
fn count(tally: &mut Tally, event: &RunEvent, multi: Option<&MultiProgress>, style: &ProgressStyle) {
    let Some(task) = &event.task else {
        return;
    };
    if event.flow != tally.flow {
        return; // a subflow's task runs: its parent task counts for it
    }
    match (event.map_index, &event.new) {
        (None, State::Mapped { children }) => {
            let children = *children as u64;
            tally.known += children;
            let entry = tally.mapped.entry(task.to_string()).or_default();
            entry.known = children;
            if let Some(multi) = multi {
                let bar = multi.add(ProgressBar::new(children));
                bar.set_style(style.clone());
                bar.set_prefix(task.to_string());
                entry.bar = Some(bar);
            }
        }
        (None, new) => {
            // A failed attempt is final until it is retried (`Failed` → `Retrying`).
            if new.is_finished() {
                tally.finished += 1;
            }
            if event.old.is_finished() && !new.is_finished() {
                tally.finished = tally.finished.saturating_sub(1);
            }
        }
        (Some(_), new) => {
            let entry = tally.mapped.entry(task.to_string()).or_default();
            if matches!(new, State::Retrying { .. }) {
                entry.retrying += 1;
            }
            if matches!(event.old, State::Retrying { .. }) {
                entry.retrying = entry.retrying.saturating_sub(1);
            }
            if new.is_finished() {
                entry.done += 1;
                tally.finished += 1;
                if new.is_failed() {
                    entry.failed += 1;
                }
            }
            // A failed attempt is final until it is retried (`Failed` → `Retrying`).
            if event.old.is_finished() && !new.is_finished() {
                entry.done = entry.done.saturating_sub(1);
                tally.finished = tally.finished.saturating_sub(1);
                if event.old.is_failed() {
                    entry.failed = entry.failed.saturating_sub(1);
                }
            }
            if let Some(bar) = &entry.bar {
                bar.set_position(entry.done);
                bar.set_message(entry.message());
            }
        }
    }
}

/// `progress: 12/33 task runs finished; cleaned 10/24 (2 retrying)`.
fn line(tally: &Tally) -> String {
    let mut s = format!("progress: {}/{} task runs finished", tally.finished, tally.known);
    for (task, c) in &tally.mapped {
        s.push_str(&format!("; {task} {}/{}", c.done, c.known));
        let message = c.message();
        if !message.is_empty() {
            s.push_str(&format!(" ({message})"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_counts_task_runs_and_each_mapped_tasks_children() {
        let mut tally = Tally {
            flow: "f",
            known: 3,
            finished: 1,
            mapped: BTreeMap::new(),
        };
        tally.known += 24;
        tally.mapped.insert(
            "cleaned".into(),
            Children {
                known: 24,
                done: 10,
                failed: 1,
                retrying: 2,
                bar: None,
            },
        );
        tally.finished += 10;
        assert_eq!(
            line(&tally),
            "progress: 11/27 task runs finished; cleaned 10/24 (1 failed, 2 retrying)"
        );
    }
}
