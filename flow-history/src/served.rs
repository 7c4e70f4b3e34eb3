//! What `serve` keeps in the history: the `serve` processes, and the runs they record
//! before starting them (`Scheduled`), so that a `serve` started after another one died
//! runs no slot twice and forgets none.
//!
//! - A slot of a schedule is one row (a unique index on flow, schedule, slot): whoever
//!   records it first runs it; [`History::record_slot`] tells the others it is taken.
//! - A run asked for by hand ([`History::request_run`]) is a `Scheduled` row no `serve`
//!   owns yet; the `serve` serving its flow claims it ([`History::claim_pending`]).
//! - A `Scheduled` row whose `serve` is gone (killed, or stopped before it could start
//!   it) is claimed by the next `serve` of its flow, and run.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::process;
use crate::query::{run_record, RUN_COLUMNS};
use crate::{History, HistoryError, RunRecord};
use flow_runtime::FlowRunId;

/// A `serve` process in the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerId(pub i64);

/// What asked for a run `serve` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A slot of one of the flow's schedules.
    Schedule,
    /// Asked for by hand (`run --via-serve`, the dashboard).
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// A run to record before it starts.
#[derive(Clone, Debug)]
pub struct NewRun<'a> {
    /// The flow's name.
    pub flow: &'a str,
    /// The flow's description.
    pub description: &'a str,
    /// The flow's version ([`crate::RunInfo::version`]).
    pub version: &'a str,
    /// The run's parameters, as a JSON object.
    pub parameters: &'a serde_json::Value,
    /// The schedule's key (its text and parameters), for a slot.
    pub schedule: Option<&'a str>,
    /// When it is due, in seconds since the Unix epoch.
    pub scheduled_for: f64,
    /// What asks for it.
    pub trigger: Trigger,
}

/// A live `serve`, as the history knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerRecord {
    /// Its id.
    pub id: ServerId,
    /// Its process.
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// The flows it serves.
    pub flows: Vec<String>,
    /// When it started, in seconds since the Unix epoch.
    pub started_at: f64,
}

impl History {
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, HistoryError> {
        let mut conn = self.reader();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(e))?;
        let out = f(&tx).map_err(|e| self.db_error(e))?;
        tx.commit().map_err(|e| self.db_error(e))?;
        Ok(out)
    }

    /// Records this process as a `serve` of `flows`.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn start_server(&self, flows: &[&str]) -> Result<ServerId, HistoryError> {
        let pid = std::process::id();
        let names = serde_json::to_string(flows).unwrap_or_else(|_| "[]".to_owned());
        self.write(|tx| {
            let now = process::now();
            tx.execute(
                "INSERT INTO server (pid, pid_started, host, flows, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![pid, process::started(pid), process::host(), names, now],
            )?;
            Ok(ServerId(tx.last_insert_rowid()))
        })
    }

    /// Tells the history `server` is alive (for programs on other hosts).
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn server_beat(&self, server: ServerId) -> Result<(), HistoryError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE server SET heartbeat_at = ?2 WHERE id = ?1",
                params![server.0, process::now()],
            )
            .map(drop)
        })
    }

    /// Records that `server` stopped: its `Scheduled` runs wait for the next `serve`.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn stop_server(&self, server: ServerId) -> Result<(), HistoryError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE server SET stopped_at = ?2 WHERE id = ?1",
                params![server.0, process::now()],
            )
            .map(drop)
        })
    }

    /// The `serve` processes alive now that serve `flow`.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn live_servers(&self, flow: &str) -> Result<Vec<ServerRecord>, HistoryError> {
        let (here, now) = (process::host(), process::now());
        let rows = server_rows(&self.reader()).map_err(|e| self.db_error(e))?;
        Ok(rows
            .into_iter()
            .filter(|s| s.alive(&here, now) && s.record.flows.iter().any(|f| f == flow))
            .map(|s| s.record)
            .collect())
    }

    /// The latest slot recorded for the schedule `schedule` (its key) of `flow`.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn last_slot(&self, flow: &str, schedule: &str) -> Result<Option<f64>, HistoryError> {
        let conn = self.reader();
        conn.query_row(
            "SELECT max(scheduled_for) FROM flow_run WHERE flow = ?1 AND schedule = ?2",
            params![flow, schedule],
            |r| r.get(0),
        )
        .optional()
        .map(Option::flatten)
        .map_err(|e| self.db_error(e))
    }

    /// Records a run as `Scheduled` for `server`, before it starts. For a slot that is
    /// already recorded (by this `serve` before it died, or by another), records nothing
    /// and returns `None`.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn record_slot(&self, run: &NewRun<'_>, server: ServerId) -> Result<Option<FlowRunId>, HistoryError> {
        let id = FlowRunId::new();
        self.insert(run, id, Some(server), "Scheduled", None)
            .map(|made| made.then_some(id))
    }

    /// Records a slot that does not run (the flow had its most runs running) as
    /// `Skipped`, with `message`. Returns whether it was recorded (not taken already).
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn record_skipped_slot(
        &self,
        run: &NewRun<'_>,
        server: ServerId,
        message: &str,
    ) -> Result<bool, HistoryError> {
        self.insert(run, FlowRunId::new(), Some(server), "Skipped", Some(message))
    }

    /// Asks the `serve` of `run.flow` to run it: a `Scheduled` run no `serve` owns yet.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn request_run(&self, run: &NewRun<'_>) -> Result<FlowRunId, HistoryError> {
        let id = FlowRunId::new();
        self.insert(run, id, None, "Scheduled", None)?;
        Ok(id)
    }

    /// Asks the `serve` of `flow` to run it with its parameters as they are set now (what
    /// `run --via-serve` and the dashboard's "run now" do).
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn request<F: crate::Recordable>(&self, flow: &F) -> Result<FlowRunId, HistoryError> {
        let info = flow.run_info();
        self.request_run(&NewRun {
            flow: &info.flow,
            description: &info.description,
            version: &info.version,
            parameters: &info.parameters,
            schedule: None,
            scheduled_for: process::now(),
            trigger: Trigger::Manual,
        })
    }

    fn insert(
        &self,
        run: &NewRun<'_>,
        id: FlowRunId,
        server: Option<ServerId>,
        state: &str,
        message: Option<&str>,
    ) -> Result<bool, HistoryError> {
        let pid = std::process::id();
        self.write(|tx| {
            let now = process::now();
            tx.execute(
                "INSERT INTO flow (name, description, version, seen_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (name) DO UPDATE SET description = excluded.description, version = excluded.version, \
                 seen_at = excluded.seen_at",
                params![run.flow, run.description, run.version, now],
            )?;
            let ended = (state != "Scheduled").then_some(now);
            let made = tx.execute(
                "INSERT INTO flow_run (id, flow, version, parameters, state, message, created_at, ended_at, \
                 last_event_at, pid, pid_started, host, heartbeat_at, scheduled_for, schedule, trigger, server) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7, ?9, ?10, ?11, ?7, ?12, ?13, ?14, ?15) ON CONFLICT DO NOTHING",
                params![
                    id.to_string(),
                    run.flow,
                    run.version,
                    run.parameters.to_string(),
                    state,
                    message,
                    now,
                    ended,
                    pid,
                    process::started(pid),
                    process::host(),
                    run.scheduled_for,
                    run.schedule,
                    run.trigger.as_str(),
                    server.map(|s| s.0),
                ],
            )?;
            Ok(made == 1)
        })
    }

    /// Claims for `server` the `Scheduled` runs of `flows` that no live `serve` owns:
    /// those asked for by hand, and those of a `serve` that died or stopped before it
    /// started them. Returns them, the earliest due first.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn claim_pending(&self, server: ServerId, flows: &[&str]) -> Result<Vec<RunRecord>, HistoryError> {
        let here = process::host();
        let now = process::now();
        let names = serde_json::to_string(flows).unwrap_or_else(|_| "[]".to_owned());
        self.write(|tx| {
            // The `serve`s that are gone: their waiting runs are anyone's.
            let gone: Vec<i64> = server_rows(tx)?
                .into_iter()
                .filter(|s| s.record.id != server && !s.alive(&here, now))
                .map(|s| s.record.id.0)
                .collect();
            let gone = serde_json::to_string(&gone).unwrap_or_else(|_| "[]".to_owned());
            tx.execute(
                "UPDATE flow_run SET server = ?1 WHERE state = 'Scheduled' \
                 AND flow IN (SELECT value FROM json_each(?2)) \
                 AND (server IS NULL OR server IN (SELECT value FROM json_each(?3)))",
                params![server.0, names, gone],
            )?;
            let mut stmt = tx.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM flow_run WHERE state = 'Scheduled' AND server = ?1 \
                 ORDER BY scheduled_for, run"
            ))?;
            let rows = stmt.query_map(params![server.0], run_record)?;
            rows.collect::<rusqlite::Result<_>>()
        })
    }

    /// Pauses (`paused`) or resumes the schedule `schedule` (its key) of `flow`: a
    /// `serve` records no slot of a paused schedule; resumed, it goes on from its next
    /// slot (the slots of the pause are not made up).
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn set_paused(&self, flow: &str, schedule: &str, paused: bool) -> Result<(), HistoryError> {
        self.write(|tx| {
            if paused {
                tx.execute(
                    "INSERT INTO schedule_pause (flow, schedule, paused_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT DO NOTHING",
                    params![flow, schedule, process::now()],
                )
            } else {
                tx.execute(
                    "DELETE FROM schedule_pause WHERE flow = ?1 AND schedule = ?2",
                    params![flow, schedule],
                )
            }
            .map(drop)
        })
    }

    /// The paused schedules: (flow, schedule key).
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn paused_schedules(&self) -> Result<std::collections::HashSet<(String, String)>, HistoryError> {
        Ok(self
            .all("SELECT flow, schedule FROM schedule_pause", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .into_iter()
            .collect())
    }

    /// Records that the `Scheduled` run `id` will not run, with `message` (`Cancelled`).
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn cancel_scheduled(&self, id: FlowRunId, message: &str) -> Result<bool, HistoryError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE flow_run SET state = 'Cancelled', message = ?2, ended_at = ?3 \
                 WHERE id = ?1 AND state = 'Scheduled'",
                params![id.to_string(), message, process::now()],
            )
            .map(|n| n == 1)
        })
    }
}

/// A row of `server`.
struct ServerRow {
    record: ServerRecord,
    pid_started: Option<i64>,
    heartbeat_at: f64,
    stopped: bool,
}

impl ServerRow {
    fn alive(&self, here: &str, now: f64) -> bool {
        !self.stopped
            && process::is_alive(
                here,
                now,
                self.record.pid,
                self.pid_started,
                &self.record.host,
                self.heartbeat_at,
            )
    }
}

/// Every `serve` the history has known.
fn server_rows(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<ServerRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, pid, pid_started, host, flows, started_at, heartbeat_at, stopped_at FROM server ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let flows: String = r.get(4)?;
        Ok(ServerRow {
            record: ServerRecord {
                id: ServerId(r.get(0)?),
                pid: r.get(1)?,
                host: r.get(3)?,
                flows: serde_json::from_str(&flows).unwrap_or_default(),
                started_at: r.get(5)?,
            },
            pid_started: r.get(2)?,
            heartbeat_at: r.get(6)?,
            stopped: r.get::<_, Option<f64>>(7)?.is_some(),
        })
    })?;
    rows.collect()
}
