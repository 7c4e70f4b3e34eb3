//! Reading the history: runs, a run's task runs, its log lines.

use rusqlite::{params, OptionalExtension};

use crate::{History, HistoryError};

/// A flow run as the history has it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// The run's id.
    pub id: String,
    /// The flow's name.
    pub flow: String,
    /// The flow's version (a hash of its graph).
    pub version: String,
    /// The parameters' values.
    pub parameters: serde_json::Value,
    /// The state's name (`Running`, `Success`, `Failed`, `Crashed`...).
    pub state: String,
    /// The state's message.
    pub message: Option<String>,
    /// When the run was first seen, in seconds since the Unix epoch.
    pub created_at: f64,
    /// When it started running.
    pub started_at: Option<f64>,
    /// When it ended.
    pub ended_at: Option<f64>,
    /// The process that ran it.
    pub pid: u32,
    /// The host it ran on.
    pub host: String,
    /// For a subflow's run, the parent's task run that ran it (`<run id>-<node>[-<index>]`).
    pub parent: Option<String>,
    /// For a run `serve` ran: the time it was due (its schedule's slot, or when it was
    /// asked for), in seconds since the Unix epoch.
    pub scheduled_for: Option<f64>,
    /// The schedule (its text and parameters) whose slot it is.
    pub schedule: Option<String>,
    /// What asked for it: `schedule`, `manual` (`run --via-serve`); `None` for a run its
    /// program started.
    pub trigger: Option<String>,
}

/// A task run (or mapped child) as the history has it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRunRecord {
    /// The task's position in the flow's graph.
    pub node: u32,
    /// Its name in the flow (its binding).
    pub task: String,
    /// The task (function) it runs, when known (not for a subflow's task runs).
    pub function: Option<String>,
    /// The child's index, for a mapped child.
    pub map_index: Option<u32>,
    /// Attempts made.
    pub attempts: u32,
    /// The state's name.
    pub state: String,
    /// The state's message.
    pub message: Option<String>,
    /// When it first ran.
    pub started_at: Option<f64>,
    /// When it ended.
    pub ended_at: Option<f64>,
}

impl RunRecord {
    /// The run as JSON (`runs --json`, the dashboard's API).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "flow": self.flow,
            "version": self.version,
            "parameters": self.parameters,
            "state": self.state,
            "message": self.message,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "pid": self.pid,
            "host": self.host,
            "parent": self.parent,
            "scheduled_for": self.scheduled_for,
            "schedule": self.schedule,
            "trigger": self.trigger,
        })
    }
}

impl TaskRunRecord {
    /// The task run as JSON (`show --json`, the dashboard's API).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "node": self.node,
            "task": self.task,
            "function": self.function,
            "map_index": self.map_index,
            "attempts": self.attempts,
            "state": self.state,
            "message": self.message,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        })
    }

    /// `clean[3]` for a mapped child, `clean` otherwise.
    pub fn name(&self) -> String {
        match self.map_index {
            Some(i) => format!("{}[{i}]", self.task),
            None => self.task.clone(),
        }
    }
}

/// A log line of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// Its position in the history (lines after it have larger ones).
    pub id: i64,
    /// The task run's node, for a task run's line.
    pub node: Option<u32>,
    /// The task's name, for a task run's line.
    pub task: Option<String>,
    /// The child's index.
    pub map_index: Option<u32>,
    /// The attempt.
    pub attempt: Option<u32>,
    /// `ERROR`, `WARN`, `INFO`...
    pub level: String,
    /// When, in seconds since the Unix epoch.
    pub at: f64,
    /// The `tracing` target.
    pub target: String,
    /// The message.
    pub message: String,
    /// The other fields, as a JSON object.
    pub fields: Option<String>,
}

/// A state change of a run or of one of its task runs, as the history has it.
#[derive(Clone, Debug, PartialEq)]
pub struct StateEventRecord {
    /// Its position in its run, from 1.
    pub seq: u64,
    /// The task run's node; `None` for the flow run's own.
    pub node: Option<u32>,
    /// The child's index.
    pub map_index: Option<u32>,
    /// The attempt it belongs to.
    pub attempt: u32,
    /// The state before.
    pub old: String,
    /// The state after.
    pub new: String,
    /// The new state's message.
    pub message: Option<String>,
    /// When, in seconds since the Unix epoch.
    pub at: f64,
}

/// Which runs [`History::runs`] lists.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Runs of this flow only.
    pub flow: Option<String>,
    /// Runs in this state only (`failed`, `Running`...; any case).
    pub state: Option<String>,
    /// At most this many, the newest first (all when `None`).
    pub limit: Option<usize>,
    /// Runs made at or after this time only (seconds since the Unix epoch).
    pub since: Option<f64>,
    /// Skip this many of the newest first (for pages).
    pub offset: usize,
}

/// A task of a run at a glance: its own task run, and its mapped children counted by
/// state (what a run's page shows of a map of 100,000).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSummary {
    /// The task's position in the flow's graph.
    pub node: u32,
    /// The task run of the task itself (for a mapped task, its `Mapped` parent).
    pub own: Option<TaskRunRecord>,
    /// Its mapped children by state: (state, how many), the most first.
    pub children: Vec<(String, u64)>,
    /// The most attempts a child made.
    pub max_child_attempts: u32,
    /// How many children needed more than one attempt.
    pub retried_children: u64,
}

impl TaskSummary {
    /// How many mapped children it has.
    pub fn child_count(&self) -> u64 {
        self.children.iter().map(|(_, n)| n).sum()
    }
}

fn task_run_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRunRecord> {
    let index: i64 = r.get(2)?;
    Ok(TaskRunRecord {
        node: r.get(0)?,
        task: r.get(1)?,
        map_index: u32::try_from(index).ok(),
        attempts: r.get(3)?,
        state: r.get(4)?,
        message: r.get(5)?,
        started_at: r.get(6)?,
        ended_at: r.get(7)?,
        function: r.get(8)?,
    })
}

const TASK_COLUMNS: &str =
    "t.node, t.task, t.map_index, t.attempts, t.state, t.message, t.started_at, t.ended_at, t.function";

/// `2026-11-28 23:54:22` (UTC) for seconds since the Unix epoch.
pub fn format_time(seconds: f64) -> String {
    let secs = seconds.floor() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
}

pub(crate) const RUN_COLUMNS: &str =
    "id, flow, version, parameters, state, message, created_at, started_at, ended_at, \
                                       pid, host, parent, scheduled_for, schedule, trigger";

pub(crate) fn run_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let parameters: String = r.get(3)?;
    Ok(RunRecord {
        id: r.get(0)?,
        flow: r.get(1)?,
        version: r.get(2)?,
        parameters: serde_json::from_str(&parameters).unwrap_or(serde_json::Value::Null),
        state: r.get(4)?,
        message: r.get(5)?,
        created_at: r.get(6)?,
        started_at: r.get(7)?,
        ended_at: r.get(8)?,
        pid: r.get(9)?,
        host: r.get(10)?,
        parent: r.get(11)?,
        scheduled_for: r.get(12)?,
        schedule: r.get(13)?,
        trigger: r.get(14)?,
    })
}

impl History {
    /// Every row `sql` gives with `params`, each read by `row`.
    pub(crate) fn all<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, HistoryError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(sql).map_err(|e| self.db_error(e))?;
        let rows = stmt.query_map(params, row).map_err(|e| self.db_error(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_error(e))
    }

    /// Runs, the newest first.
    ///
    /// # Errors
    /// [`HistoryError::Database`] when the database cannot be read.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, HistoryError> {
        let limit = filter.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        self.all(
            &format!(
                "SELECT {RUN_COLUMNS} FROM flow_run WHERE (?1 IS NULL OR flow = ?1) \
                 AND (?2 IS NULL OR lower(state) = lower(?2)) AND (?4 IS NULL OR created_at >= ?4) \
                 ORDER BY run DESC LIMIT ?3 OFFSET ?5"
            ),
            params![filter.flow, filter.state, limit, filter.since, offset],
            run_record,
        )
    }

    /// How many runs `filter` lists, without its limit and offset.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn count_runs(&self, filter: &RunFilter) -> Result<u64, HistoryError> {
        self.reader()
            .query_row(
                "SELECT count(*) FROM flow_run WHERE (?1 IS NULL OR flow = ?1) \
                 AND (?2 IS NULL OR lower(state) = lower(?2)) AND (?3 IS NULL OR created_at >= ?3)",
                params![filter.flow, filter.state, filter.since],
                |r| r.get(0),
            )
            .map_err(|e| self.db_error(e))
    }

    /// Each task of the run `id` (its full id) that has run, in the flow's order: its own
    /// task run and its children counted by state, read without listing the children.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn task_summary(&self, id: &str) -> Result<Vec<TaskSummary>, HistoryError> {
        let own = self.all(
            &format!(
                "SELECT {TASK_COLUMNS} FROM task_run t JOIN flow_run f ON f.run = t.run \
                 WHERE f.id = ?1 AND t.map_index = -1 ORDER BY t.node"
            ),
            [id],
            task_run_record,
        )?;
        let counts: Vec<(u32, String, u64, u32, u64)> = self.all(
            "SELECT t.node, t.state, count(*), max(t.attempts), sum(t.attempts > 1) FROM task_run t \
             JOIN flow_run f ON f.run = t.run WHERE f.id = ?1 AND t.map_index >= 0 GROUP BY t.node, t.state",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let mut out: Vec<TaskSummary> = own
            .into_iter()
            .map(|t| TaskSummary {
                node: t.node,
                own: Some(t),
                children: Vec::new(),
                max_child_attempts: 0,
                retried_children: 0,
            })
            .collect();
        for (node, state, n, attempts, retried) in counts {
            let at = match out.iter().position(|s| s.node == node) {
                Some(at) => at,
                None => {
                    out.push(TaskSummary {
                        node,
                        own: None,
                        children: Vec::new(),
                        max_child_attempts: 0,
                        retried_children: 0,
                    });
                    out.len() - 1
                }
            };
            out[at].children.push((state, n));
            out[at].max_child_attempts = out[at].max_child_attempts.max(attempts);
            out[at].retried_children += retried;
        }
        for s in &mut out {
            s.children
                .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        out.sort_by_key(|s| s.node);
        Ok(out)
    }

    /// A page of the mapped children of the task `node` of the run `id`, in index order,
    /// of one state only when `state` says so; and how many there are in all.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn children(
        &self,
        id: &str,
        node: u32,
        state: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<TaskRunRecord>, u64), HistoryError> {
        let page = self.all(
            &format!(
                "SELECT {TASK_COLUMNS} FROM task_run t JOIN flow_run f ON f.run = t.run \
                 WHERE f.id = ?1 AND t.node = ?2 AND t.map_index >= 0 AND (?3 IS NULL OR t.state = ?3) \
                 ORDER BY t.map_index LIMIT ?4 OFFSET ?5"
            ),
            params![
                id,
                node,
                state,
                i64::try_from(limit).unwrap_or(i64::MAX),
                i64::try_from(offset).unwrap_or(i64::MAX)
            ],
            task_run_record,
        )?;
        let total = self
            .reader()
            .query_row(
                "SELECT count(*) FROM task_run t JOIN flow_run f ON f.run = t.run \
                 WHERE f.id = ?1 AND t.node = ?2 AND t.map_index >= 0 AND (?3 IS NULL OR t.state = ?3)",
                params![id, node, state],
                |r| r.get(0),
            )
            .map_err(|e| self.db_error(e))?;
        Ok((page, total))
    }

    /// The task run `node` (child `index` of a mapped task) of the run `id`.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn task_run(
        &self,
        id: &str,
        node: u32,
        index: Option<u32>,
    ) -> Result<Option<TaskRunRecord>, HistoryError> {
        let index = index.map_or(-1, i64::from);
        self.reader()
            .query_row(
                &format!(
                    "SELECT {TASK_COLUMNS} FROM task_run t JOIN flow_run f ON f.run = t.run \
                     WHERE f.id = ?1 AND t.node = ?2 AND t.map_index = ?3"
                ),
                params![id, node, index],
                task_run_record,
            )
            .optional()
            .map_err(|e| self.db_error(e))
    }

    /// The run whose id is `id`, or starts with `id` (at least 4 characters).
    ///
    /// # Errors
    /// [`HistoryError::UnknownRun`], [`HistoryError::AmbiguousRun`],
    /// [`HistoryError::Database`].
    pub fn run(&self, id: &str) -> Result<RunRecord, HistoryError> {
        let unknown = || HistoryError::UnknownRun { given: id.to_owned() };
        let conn = self.reader();
        let exact = conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM flow_run WHERE id = ?1"),
                [id],
                run_record,
            )
            .optional()
            .map_err(|e| self.db_error(e))?;
        if let Some(run) = exact {
            return Ok(run);
        }
        if id.len() < 4 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(unknown());
        }
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM flow_run WHERE id >= ?1 AND id < ?1 || 'g' ORDER BY run DESC LIMIT 2"
            ))
            .map_err(|e| self.db_error(e))?;
        let found: Vec<RunRecord> = stmt
            .query_map([id.to_ascii_lowercase()], run_record)
            .map_err(|e| self.db_error(e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_error(e))?;
        match found.len() {
            0 => Err(unknown()),
            1 => Ok(found.into_iter().next().ok_or_else(unknown)?),
            _ => {
                let count: usize = conn
                    .query_row(
                        "SELECT count(*) FROM flow_run WHERE id >= ?1 AND id < ?1 || 'g'",
                        [id.to_ascii_lowercase()],
                        |r| r.get(0),
                    )
                    .map_err(|e| self.db_error(e))?;
                Err(HistoryError::AmbiguousRun {
                    given: id.to_owned(),
                    count,
                })
            }
        }
    }

    /// The task runs of the run `id` (its full id), in the flow's order, each task's
    /// children after it by index.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn task_runs(&self, id: &str) -> Result<Vec<TaskRunRecord>, HistoryError> {
        self.all(
            &format!(
                "SELECT {TASK_COLUMNS} FROM task_run t JOIN flow_run f ON f.run = t.run WHERE f.id = ?1 \
                 ORDER BY t.node, t.map_index"
            ),
            [id],
            task_run_record,
        )
    }

    /// Every state event of the run `id` (its full id), in order.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn events(&self, id: &str) -> Result<Vec<StateEventRecord>, HistoryError> {
        let packs: Vec<String> = self.all(
            "SELECT e.events FROM state_events e JOIN flow_run f ON f.run = e.run WHERE f.id = ?1 \
             ORDER BY e.first_seq",
            [id],
            |r| r.get(0),
        )?;
        let mut events = Vec::new();
        for pack in packs {
            type Row = (
                u64,
                Option<u32>,
                Option<u32>,
                u32,
                String,
                String,
                Option<String>,
                f64,
            );
            let rows: Vec<Row> = serde_json::from_str(&pack).map_err(|e| HistoryError::Damaged {
                path: self.path.clone(),
                what: format!("the state events of run {id} ({e})"),
            })?;
            events.extend(
                rows.into_iter()
                    .map(
                        |(seq, node, map_index, attempt, old, new, message, at)| StateEventRecord {
                            seq,
                            node,
                            map_index,
                            attempt,
                            old,
                            new,
                            message,
                            at,
                        },
                    ),
            );
        }
        Ok(events)
    }

    /// The log lines of the run `id` (its full id) after the line `after` (0: from the
    /// first), of one task run when `task` names it (`(name, index)`), in order.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn logs(
        &self,
        id: &str,
        task: Option<(&str, Option<u32>)>,
        after: i64,
    ) -> Result<Vec<LogLine>, HistoryError> {
        let (name, index) = match task {
            Some((name, index)) => (Some(name), Some(index.map_or(-1, i64::from))),
            None => (None, None),
        };
        self.all(
            "SELECT l.id, l.node, \
             (SELECT t.task FROM task_run t WHERE t.run = l.run AND t.node = l.node LIMIT 1), \
             l.map_index, l.attempt, l.level, l.at, l.target, l.message, l.fields \
             FROM log l JOIN flow_run f ON f.run = l.run WHERE f.id = ?1 AND l.id > ?2 \
             AND (?3 IS NULL OR (l.node IN (SELECT node FROM task_run t WHERE t.run = l.run AND t.task = ?3) \
             AND coalesce(l.map_index, -1) = ?4)) ORDER BY l.id",
            params![id, after, name, index],
            |r| {
                Ok(LogLine {
                    id: r.get(0)?,
                    node: r.get(1)?,
                    task: r.get(2)?,
                    map_index: r.get(3)?,
                    attempt: r.get(4)?,
                    level: r.get(5)?,
                    at: r.get(6)?,
                    target: r.get(7)?,
                    message: r.get(8)?,
                    fields: r.get(9)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn times_are_shown_as_utc_dates() {
        assert_eq!(format_time(0.0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_795_996_462.5), "2026-11-29 23:54:22");
        assert_eq!(format_time(951_782_400.0), "2000-02-29 00:00:00");
    }
}
