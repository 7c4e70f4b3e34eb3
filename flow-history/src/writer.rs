//! The writer thread: events and log lines in, batched `IMMEDIATE` transactions out.
//!
//! Everything queued when a transaction starts goes into it: under load, batches grow
//! and the cost per event falls. Within a batch, a task run's row is written once, with
//! its last state (every event is still written to `state_event`).

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flow_runtime::event::RunEvent;
use flow_runtime::FlowRunId;
use rusqlite::{params, Connection, TransactionBehavior};

use crate::process::{self, seconds};
use crate::{RunInfo, Written};

/// What the writer is sent.
pub(crate) enum Msg {
    /// Events of a recorded flow's runs, in order.
    Events {
        /// The flow's run info.
        info: Arc<RunInfo>,
        /// The events.
        events: Vec<RunEvent>,
    },
    /// A log line of a run.
    Log(LogRecord),
    /// Write what is queued, then stop.
    Close,
}

impl Msg {
    /// How many events it carries.
    fn events(&self) -> usize {
        match self {
            Msg::Events { events, .. } => events.len(),
            _ => 1,
        }
    }
}

/// A log line, filed under its run (and task run, and attempt).
pub(crate) struct LogRecord {
    pub run: FlowRunId,
    pub node: Option<u32>,
    pub map_index: Option<u32>,
    pub attempt: Option<u32>,
    pub level: &'static str,
    pub at: f64,
    pub target: String,
    pub message: String,
    pub fields: Option<String>,
}

/// How often the writer tells the database that this program's open runs are alive.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// At most this many messages go into one transaction...
const MAX_BATCH: usize = 256;

/// ... and about this many events: a larger transaction outgrows the page cache, and
/// SQLite spills pages to the WAL in the middle of it.
const MAX_EVENTS: usize = 16_384;

/// Log lines of runs not yet in the database (their first event still on its way) are
/// kept for them, up to this many.
const PENDING_LOGS: usize = 100_000;

pub(crate) fn spawn(
    conn: Connection,
    path: PathBuf,
    rx: Receiver<Msg>,
    written: Arc<Written>,
) -> JoinHandle<()> {
    let mut writer = Writer {
        conn,
        path,
        runs: HashMap::new(),
        open: HashSet::new(),
        pending_logs: HashMap::new(),
        pending_count: 0,
        written,
        pid: std::process::id(),
        pid_started: process::started(std::process::id()),
        host: process::host(),
        failures: 0,
    };
    std::thread::Builder::new()
        .name("tideflow-history".into())
        .spawn(move || {
            writer.run(&rx);
            *writer
                .written
                .stopped
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = true;
            writer.written.changed.notify_all();
        })
        .unwrap_or_else(|e| panic!("cannot start the run history's writer thread: {e}"))
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    /// Run rows by run id, with what to add to their events' `seq` (a restarted run goes
    /// on under its id, and its engine counts from 1 again).
    runs: HashMap<FlowRunId, (i64, u64)>,
    /// Runs of this program not finished yet (their heartbeats).
    open: HashSet<i64>,
    pending_logs: HashMap<FlowRunId, Vec<LogRecord>>,
    pending_count: usize,
    written: Arc<Written>,
    pid: u32,
    pid_started: Option<i64>,
    host: String,
    /// Batches that could not be written (said once in the logs).
    failures: u64,
}

/// A run's events of one batch, as the JSON array of one `state_events` row.
struct Pack {
    first: u64,
    last: u64,
    count: usize,
    /// When the last one happened.
    at: f64,
    json: Vec<u8>,
}

/// At most this many events go in one `state_events` row.
const PACK_EVENTS: usize = 1024;

impl Pack {
    fn new(first: u64) -> Self {
        let mut json = Vec::with_capacity(64 * PACK_EVENTS);
        json.push(b'[');
        Pack {
            first,
            last: first,
            count: 0,
            at: 0.0,
            json,
        }
    }

    /// Makes room for the event `seq` (which the caller then writes).
    fn push(&mut self, seq: u64, at: f64) {
        if self.count > 0 {
            self.json.push(b',');
        }
        self.count += 1;
        self.last = seq;
        self.at = self.at.max(at);
    }
}

/// Task run rows written by one statement.
const ROWS: usize = 64;

/// The upsert of `rows` task run rows.
fn upsert_sql(rows: usize) -> String {
    let one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    format!(
        "INSERT INTO task_run (run, node, map_index, task, attempts, state, message, started_at, ended_at, function) \
         VALUES {} ON CONFLICT (run, node, map_index) DO UPDATE SET \
         attempts = max(attempts, excluded.attempts), state = excluded.state, message = excluded.message, \
         started_at = coalesce(task_run.started_at, excluded.started_at), ended_at = excluded.ended_at",
        vec![one; rows].join(", ")
    )
}

/// The values of one task run row, in `upsert_sql`'s order.
fn task_values<'a>(key: &'a (i64, u32, i64), row: &'a TaskRow) -> [&'a dyn rusqlite::ToSql; 10] {
    [
        &key.0,
        &key.1,
        &key.2,
        &row.task,
        &row.attempts,
        &row.state,
        &row.message,
        &row.started_at,
        &row.ended_at,
        &row.function,
    ]
}

/// A task run's row, as the batch leaves it.
struct TaskRow {
    task: Arc<str>,
    /// The task (function), when the flow is the recorded one (not a subflow).
    function: Option<&'static str>,
    attempts: u32,
    state: &'static str,
    message: Option<String>,
    started_at: Option<f64>,
    ended_at: Option<f64>,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Msg>) {
        let mut last_beat = Instant::now();
        loop {
            let first = match rx.recv_timeout(HEARTBEAT) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    self.heartbeat();
                    last_beat = Instant::now();
                    // Idle: fold the WAL into the database without waiting for readers.
                    let _ = self
                        .conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut events = first.events();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && events < MAX_EVENTS {
                match rx.try_recv() {
                    Ok(msg) => {
                        events += msg.events();
                        batch.push(msg);
                    }
                    Err(_) => break,
                }
            }
            let close = batch.iter().any(|m| matches!(m, Msg::Close));
            self.write(batch);
            if last_beat.elapsed() >= HEARTBEAT {
                self.heartbeat();
                last_beat = Instant::now();
            }
            if close {
                let _ = self
                    .conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                return;
            }
        }
    }

    /// Writes one batch in one transaction, retrying a few times when another program
    /// holds the lock past the busy timeout.
    fn write(&mut self, batch: Vec<Msg>) {
        let mut finished = Vec::new();
        let mut result = Err(rusqlite::Error::InvalidQuery);
        for _ in 0..3 {
            finished.clear();
            let runs_before = self.runs.clone();
            result = self.write_once(&batch, &mut finished);
            if result.is_ok() {
                break;
            }
            // Rows made in the failed transaction do not exist.
            self.runs = runs_before;
        }
        match result {
            Ok(()) => {
                if !finished.is_empty() {
                    let mut done = self
                        .written
                        .finished
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    done.extend(finished);
                    drop(done);
                    self.written.changed.notify_all();
                }
            }
            Err(e) => {
                self.failures += 1;
                if self.failures == 1 {
                    tracing::error!(
                        target: "tideflow::history",
                        "cannot write to the run history {}: {}",
                        self.path.display(),
                        crate::explain(&e)
                    );
                }
            }
        }
    }

    fn write_once(&mut self, batch: &[Msg], finished: &mut Vec<FlowRunId>) -> rusqlite::Result<()> {
        let mut made: Vec<FlowRunId> = Vec::new();
        self.write_batch(batch, finished, &mut made)?;
        if !made.is_empty() {
            // A restarted run is not written to its end any more.
            let mut done = self
                .written
                .finished
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for id in &made {
                if !finished.contains(id) {
                    done.remove(id);
                }
            }
        }
        Ok(())
    }

    fn write_batch(
        &mut self,
        batch: &[Msg],
        finished: &mut Vec<FlowRunId>,
        made: &mut Vec<FlowRunId>,
    ) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut tasks: FxHashMap<(i64, u32, i64), TaskRow> = FxHashMap::default();
        let mut packs: FxHashMap<i64, Pack> = FxHashMap::default();
        let mut full: Vec<(i64, Pack)> = Vec::new();
        let mut logs: Vec<&LogRecord> = Vec::new();
        {
            for msg in batch {
                match msg {
                    Msg::Events { info, events } => {
                        for ev in events {
                            let (run, offset) = match self.runs.get(&ev.flow_run_id) {
                                Some(&known) => known,
                                None => {
                                    let known = Self::insert_run(
                                        &tx,
                                        info,
                                        ev,
                                        self.pid,
                                        self.pid_started,
                                        &self.host,
                                    )?;
                                    self.runs.insert(ev.flow_run_id, known);
                                    self.open.insert(known.0);
                                    made.push(ev.flow_run_id);
                                    known
                                }
                            };
                            let seq = ev.seq + offset;
                            let at = seconds(ev.at);
                            let node = ev.task_run_id.map(|t| t.node);
                            let message = ev.new.message();
                            let packed = packs.entry(run).or_insert_with(|| Pack::new(seq));
                            if packed.count == PACK_EVENTS {
                                let next = std::mem::replace(packed, Pack::new(seq));
                                full.push((run, next));
                            }
                            packed.push(seq, at);
                            let row = (
                                seq,
                                node,
                                ev.map_index,
                                ev.attempt,
                                ev.old.name(),
                                ev.new.name(),
                                message,
                                at,
                            );
                            // Numbers, strings and options: this cannot fail.
                            let _ = serde_json::to_writer(&mut packed.json, &row);
                            match (node, &ev.task) {
                                (Some(node), Some(task)) => {
                                    let index = ev.map_index.map_or(-1, i64::from);
                                    let function = (ev.flow == info.flow)
                                        .then(|| info.functions.get(node as usize).copied())
                                        .flatten();
                                    let row = tasks.entry((run, node, index)).or_insert_with(|| TaskRow {
                                        task: Arc::clone(task),
                                        function,
                                        attempts: 0,
                                        state: "Pending",
                                        message: None,
                                        started_at: None,
                                        ended_at: None,
                                    });
                                    row.attempts = row.attempts.max(ev.attempt);
                                    row.state = ev.new.name();
                                    row.message = message.map(str::to_owned);
                                    if matches!(ev.new, flow_runtime::State::Running)
                                        && row.started_at.is_none()
                                    {
                                        row.started_at = Some(at);
                                    }
                                    row.ended_at =
                                        (ev.new.is_finished() && !ev.new.is_mapped()).then_some(at);
                                }
                                _ => {
                                    Self::update_run(&tx, run, ev, at)?;
                                    if ev.new.is_finished() {
                                        self.open.remove(&run);
                                        finished.push(ev.flow_run_id);
                                    }
                                }
                            }
                        }
                    }
                    Msg::Log(record) => logs.push(record),
                    Msg::Close => {}
                }
            }
        }
        {
            // Rows go ROWS to a statement (one statement per row cost more than the row).
            let mut rows: Vec<_> = tasks.iter().collect();
            // In key order: the table's order, so each insert lands beside the last.
            rows.sort_unstable_by_key(|(key, _)| **key);
            let mut chunks = rows.chunks_exact(ROWS);
            let mut many = tx.prepare_cached(&upsert_sql(ROWS))?;
            for chunk in &mut chunks {
                let values: Vec<&dyn rusqlite::ToSql> = chunk
                    .iter()
                    .flat_map(|(key, row)| task_values(key, row))
                    .collect();
                many.execute(values.as_slice())?;
            }
            let mut one = tx.prepare_cached(&upsert_sql(1))?;
            for (key, row) in chunks.remainder() {
                one.execute(task_values(key, row).as_slice())?;
            }
            let mut insert_events = tx.prepare_cached(
                "INSERT OR IGNORE INTO state_events (run, first_seq, last_seq, events) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut last = tx.prepare_cached(
                "UPDATE flow_run SET last_event_at = max(last_event_at, ?2) WHERE run = ?1",
            )?;
            for (run, mut pack) in full.into_iter().chain(packs) {
                pack.json.push(b']');
                let json = std::str::from_utf8(&pack.json).map_err(rusqlite::Error::Utf8Error)?;
                insert_events.execute(params![run, pack.first, pack.last, json])?;
                last.execute(params![run, pack.at])?;
            }
        }
        // Log lines: those of runs now known, and those waiting for their run's row.
        let mut waiting: Vec<LogRecord> = Vec::new();
        for id in made.iter() {
            if let Some(lines) = self.pending_logs.remove(id) {
                self.pending_count -= lines.len();
                waiting.extend(lines);
            }
        }
        {
            let mut insert_log = tx.prepare_cached(
                "INSERT INTO log (run, node, map_index, attempt, level, at, target, message, fields) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for record in waiting.iter().chain(logs.iter().copied()) {
                if let Some(&(run, _)) = self.runs.get(&record.run) {
                    insert_log.execute(params![
                        run,
                        record.node,
                        record.map_index,
                        record.attempt,
                        record.level,
                        record.at,
                        record.target,
                        record.message,
                        record.fields
                    ])?;
                }
            }
        }
        tx.commit()?;
        // Lines of runs whose first event has not come yet: kept for it.
        for record in batch.iter().filter_map(|m| match m {
            Msg::Log(r) if !self.runs.contains_key(&r.run) => Some(r),
            _ => None,
        }) {
            if self.pending_count < PENDING_LOGS {
                self.pending_count += 1;
                self.pending_logs
                    .entry(record.run)
                    .or_default()
                    .push(record.clone());
            }
        }
        Ok(())
    }

    fn insert_run(
        tx: &rusqlite::Transaction<'_>,
        info: &RunInfo,
        ev: &RunEvent,
        pid: u32,
        pid_started: Option<i64>,
        host: &str,
    ) -> rusqlite::Result<(i64, u64)> {
        let at = seconds(ev.at);
        // A subflow's events come with its parent's subscription: its own name, no
        // parameters known here.
        let (version, parameters, description) = if ev.flow == info.flow {
            (
                info.version.as_str(),
                info.parameters.to_string(),
                info.description.as_str(),
            )
        } else {
            ("", "{}".to_owned(), "")
        };
        tx.execute(
            "INSERT INTO flow (name, description, version, seen_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (name) DO UPDATE SET description = excluded.description, version = excluded.version, \
             seen_at = excluded.seen_at WHERE excluded.version != ''",
            params![ev.flow, description, version, at],
        )?;
        let made = tx.execute(
            "INSERT INTO flow_run (id, flow, version, parameters, state, created_at, last_event_at, pid, pid_started, \
             host, heartbeat_at, parent) VALUES (?1, ?2, ?3, ?4, 'Pending', ?5, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (id) DO NOTHING",
            params![
                ev.flow_run_id.to_string(),
                ev.flow,
                version,
                parameters,
                at,
                pid,
                pid_started,
                host,
                process::now(),
                ev.parent.map(|p| p.to_string())
            ],
        )?;
        let run: i64 = tx.query_row(
            "SELECT run FROM flow_run WHERE id = ?1",
            params![ev.flow_run_id.to_string()],
            |r| r.get(0),
        )?;
        if made == 1 {
            return Ok((run, 0));
        }
        // A run restarted (`Flow::restart`): it goes on under its id, from this program,
        // its events after those it has.
        tx.execute(
            "UPDATE flow_run SET state = 'Pending', message = NULL, ended_at = NULL, pid = ?2, pid_started = ?3, \
             host = ?4, heartbeat_at = ?5, last_event_at = ?6 WHERE run = ?1",
            params![run, pid, pid_started, host, process::now(), at],
        )?;
        let offset: u64 = tx.query_row(
            "SELECT coalesce(max(last_seq), 0) FROM state_events WHERE run = ?1",
            params![run],
            |r| r.get(0),
        )?;
        Ok((run, offset))
    }

    fn update_run(tx: &rusqlite::Transaction<'_>, run: i64, ev: &RunEvent, at: f64) -> rusqlite::Result<()> {
        let started = matches!(ev.new, flow_runtime::State::Running).then_some(at);
        let ended = ev.new.is_finished().then_some(at);
        tx.prepare_cached(
            "UPDATE flow_run SET state = ?2, message = ?3, started_at = coalesce(started_at, ?4), \
             ended_at = coalesce(?5, ended_at) WHERE run = ?1",
        )?
        .execute(params![run, ev.new.name(), ev.new.message(), started, ended])?;
        Ok(())
    }

    fn heartbeat(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let now = process::now();
        let result = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut beat = tx.prepare_cached("UPDATE flow_run SET heartbeat_at = ?2 WHERE run = ?1")?;
                for run in &self.open {
                    beat.execute(params![run, now])?;
                }
            }
            tx.commit()
        })();
        if let Err(e) = result {
            tracing::debug!(target: "tideflow::history", "heartbeat not written: {e}");
        }
    }
}

impl Clone for LogRecord {
    fn clone(&self) -> Self {
        LogRecord {
            run: self.run,
            node: self.node,
            map_index: self.map_index,
            attempt: self.attempt,
            level: self.level,
            at: self.at,
            target: self.target.clone(),
            message: self.message.clone(),
            fields: self.fields.clone(),
        }
    }
}
