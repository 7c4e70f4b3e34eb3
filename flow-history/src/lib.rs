//! The run history of tideflow programs, in an embedded SQLite database
//! (`$TIDEFLOW_HOME/tideflow.db`, `~/.tideflow/tideflow.db` by default): flows, flow runs
//! with their parameters, task runs, every state event, and task runs' log lines.
//!
//! A recorded flow's events are written by a thread of the history, in batched
//! transactions, while the run goes on: another program reading the database sees a run
//! while it runs. Two programs may write to one database at once (SQLite's WAL, writes
//! in `IMMEDIATE` transactions, waiting up to 5 s for the other's lock).
//!
//! ```ignore
//! // Through the `tideflow` crate, in an async fn returning `Result<_, HistoryError>`:
//! let history = tideflow::history::History::open_default()?;
//! let run = history.record(my_flow()).run().await;
//! history.wait(run.id()); // its last event and log lines are written
//! ```
//!
//! A run whose program died (SIGKILL, a lost machine) stays `Running` in the database; the
//! next program that opens it marks it `Crashed`, unless its process is still alive (told
//! by its pid and start time on this host, by its heartbeat elsewhere).

#![warn(missing_docs)]

mod layer;
mod process;
mod query;
mod schema;
mod served;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use flow_runtime::event::{Delivery, Received, Subscription};
use flow_runtime::registry::DynFlow;
use flow_runtime::{Flow, FlowRunId};
use rusqlite::Connection;

pub use layer::HistoryLayer;
pub use query::{format_time, LogLine, RunFilter, RunRecord, StateEventRecord, TaskRunRecord, TaskSummary};
pub use served::{NewRun, ServerId, ServerRecord, Trigger};

use writer::Msg;

/// Why the run history cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Neither `TIDEFLOW_HOME` nor `HOME` is set.
    #[error("no folder for the run history: set TIDEFLOW_HOME (or HOME)")]
    NoHome,
    /// `TIDEFLOW_HOME` names a file.
    #[error("TIDEFLOW_HOME is {}, which is a file, not a folder: point TIDEFLOW_HOME at a folder", .path.display())]
    HomeIsFile {
        /// The path.
        path: PathBuf,
    },
    /// The history's folder cannot be made.
    #[error("cannot make the run history's folder {}: {source}", .path.display())]
    CreateHome {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused: a file that is not a database, a lock held too long, a full disk.
    #[error("the run history {} cannot be used: {}", .path.display(), explain(.source))]
    Database {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer tideflow.
    #[error(
        "the run history {} was written by a newer tideflow (schema version {found}; this one knows up to {known}): \
         upgrade tideflow, or point TIDEFLOW_HOME at another folder",
        .path.display()
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The newest this build knows.
        known: u32,
    },
    /// A record in the database cannot be read.
    #[error("the run history {} holds a damaged record: {what}", .path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// Which record, and what is wrong with it.
        what: String,
    },
    /// No run has this id (or id prefix).
    #[error("no run `{given}` in the run history (`runs` lists them)")]
    UnknownRun {
        /// What was given.
        given: String,
    },
    /// Several runs start with this prefix.
    #[error("`{given}` is the start of {count} runs' ids: give more of it")]
    AmbiguousRun {
        /// What was given.
        given: String,
        /// How many runs match.
        count: usize,
    },
}

/// SQLite's error, with what to do about the common ones.
fn explain(e: &rusqlite::Error) -> String {
    let code = e.sqlite_error_code();
    match code {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            format!("{e}: it is not a SQLite database (damaged?); move it away and a new one is made")
        }
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            format!("{e}: another program has held it locked for over 5 s; try again when it is done")
        }
        Some(
            rusqlite::ErrorCode::ReadOnly
            | rusqlite::ErrorCode::CannotOpen
            | rusqlite::ErrorCode::PermissionDenied,
        ) => {
            format!("{e}: it cannot be written here; check its folder's permissions or point TIDEFLOW_HOME elsewhere")
        }
        _ => e.to_string(),
    }
}

/// How long a writer waits for another program's lock before it gives up a batch.
const BUSY: Duration = Duration::from_secs(5);

/// The folder of the run history: `$TIDEFLOW_HOME`, else `~/.tideflow`.
///
/// # Errors
/// [`HistoryError::NoHome`] when neither `TIDEFLOW_HOME` nor `HOME` is set.
pub fn home() -> Result<PathBuf, HistoryError> {
    match std::env::var_os("TIDEFLOW_HOME") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".tideflow"))
            .ok_or(HistoryError::NoHome),
    }
}

/// What the history records of a flow at its runs' start: its name, description,
/// version (a hash of its graph) and parameter values.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// The flow's name.
    pub flow: String,
    /// Its doc comment.
    pub description: String,
    /// A hash of its graph (DOT text) and of the program's build (its executable): runs
    /// of another graph, or of a rebuilt program that changed, have another version.
    pub version: String,
    /// The parameters' values, as a JSON object.
    pub parameters: serde_json::Value,
    /// The task (function) of each node of the flow, by node.
    pub functions: Vec<&'static str>,
}

impl RunInfo {
    fn new(graph: &flow_runtime::Graph, dot: &str, params: Vec<(&'static str, serde_json::Value)>) -> Self {
        RunInfo {
            flow: graph.name.to_owned(),
            description: graph.description.trim().to_owned(),
            functions: graph.nodes.iter().map(|n| n.task.name).collect(),
            version: version_of(dot, program_build()),
            parameters: serde_json::Value::Object(
                params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ),
        }
    }
}

/// A flow's version: a hash of its graph's text and of the program's build, as 16 hex
/// digits.
fn version_of(graph: &str, build: &str) -> String {
    let mut text = String::with_capacity(graph.len() + build.len() + 1);
    text.push_str(graph);
    text.push('\n');
    text.push_str(build);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// A hash of this program's executable (read once), or, when it cannot be read, of its
/// tasks' signatures (`worker::build_id`).
pub fn program_build() -> &'static str {
    static BUILD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILD.get_or_init(|| {
        std::env::current_exe()
            .and_then(std::fs::read)
            .map(|bytes| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)))
            .unwrap_or_else(|_| flow_runtime::worker::build_id().to_owned())
    })
}

/// A flow the history can record: its [`RunInfo`] and its events.
pub trait Recordable {
    /// What the history records at a run's start.
    fn run_info(&self) -> RunInfo;
    /// A lossless subscription to its runs' events.
    fn subscribe_lossless(&mut self) -> Subscription;
}

impl<O: Send + Sync + 'static> Recordable for Flow<O> {
    fn run_info(&self) -> RunInfo {
        RunInfo::new(self.graph(), &self.to_dot(), self.params())
    }

    fn subscribe_lossless(&mut self) -> Subscription {
        self.subscribe(Delivery::lossless(EVENTS_QUEUE))
    }
}

impl Recordable for DynFlow {
    fn run_info(&self) -> RunInfo {
        RunInfo::new(self.graph(), &self.to_dot(), self.params())
    }

    fn subscribe_lossless(&mut self) -> Subscription {
        self.subscribe(Delivery::lossless(EVENTS_QUEUE))
    }
}

/// The events a recorded run may have queued for the history before it waits.
const EVENTS_QUEUE: usize = 65_536;

/// Messages (each up to `EVENTS_BATCH` events) queued for the writer before a recorded
/// run waits for it: the memory a run can get ahead of its history by.
const WRITER_QUEUE: usize = 32;

/// How long the forwarding thread lets a recorded run's events gather once it has sent
/// all there were.
const GATHER: Duration = Duration::from_millis(2);

/// At most this many events go to the writer in one message.
const EVENTS_BATCH: usize = 8_192;

/// The runs whose last event is written, for [`History::wait`].
#[derive(Default)]
pub(crate) struct Written {
    finished: Mutex<std::collections::HashSet<FlowRunId>>,
    changed: Condvar,
    /// The writer stopped (closed, or its thread ended).
    stopped: Mutex<bool>,
}

/// An open run history: records flows' runs, and reads what was recorded.
pub struct History {
    /// Tells this history from others in the program (whose logs the layer files).
    id: u64,
    path: PathBuf,
    tx: mpsc::SyncSender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    written: Arc<Written>,
    read: Mutex<Connection>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl History {
    /// The history at `$TIDEFLOW_HOME/tideflow.db` (see [`home`]), made if missing.
    ///
    /// # Errors
    /// As [`History::open`], and [`HistoryError::NoHome`].
    pub fn open_default() -> Result<History, HistoryError> {
        let home = home()?;
        Self::open_in(&home)
    }

    /// The history `tideflow.db` in the folder `home`, made if missing.
    ///
    /// # Errors
    /// As [`History::open`]; [`HistoryError::HomeIsFile`] or
    /// [`HistoryError::CreateHome`] for a folder that cannot be one.
    pub fn open_in(home: &Path) -> Result<History, HistoryError> {
        if home.is_file() {
            return Err(HistoryError::HomeIsFile {
                path: home.to_owned(),
            });
        }
        std::fs::create_dir_all(home).map_err(|source| HistoryError::CreateHome {
            path: home.to_owned(),
            source,
        })?;
        Self::open(&home.join("tideflow.db"))
    }

    /// The history in the database file `path`, made if missing, migrated to this
    /// build's schema; runs left `Running` by a program that died are marked `Crashed`.
    ///
    /// # Errors
    /// [`HistoryError::Database`] for a file SQLite cannot use (not a database, locked
    /// for over 5 s, not writable); [`HistoryError::Newer`] for a database of a newer
    /// tideflow, which is left untouched.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        let mut conn = connect(path)?;
        schema::migrate(&mut conn, path)?;
        process::sweep_crashed(&mut conn).map_err(|source| HistoryError::Database {
            path: path.to_owned(),
            source,
        })?;
        let write = connect(path)?;
        let written = Arc::new(Written::default());
        let (tx, rx) = mpsc::sync_channel(WRITER_QUEUE);
        let writer = writer::spawn(write, path.to_owned(), rx, Arc::clone(&written));
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(History {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            path: path.to_owned(),
            tx,
            writer: Mutex::new(Some(writer)),
            written,
            read: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records every run of `flow` from now on: its flow run, task runs, state events
    /// and (with a [`HistoryLayer`] installed) its task runs' log lines.
    pub fn record<F: Recordable>(&self, mut flow: F) -> F {
        let info = Arc::new(flow.run_info());
        let mut events = flow.subscribe_lossless();
        let tx = self.tx.clone();
        // A thread of its own, outside any async runtime: it forwards events in batches.
        let _ = std::thread::Builder::new()
            .name("tideflow-history-events".into())
            .spawn(move || {
                while let Some(first) = events.blocking_recv() {
                    let mut batch = Vec::with_capacity(64);
                    let mut next = Some(first);
                    while let Some(received) = next {
                        if let Received::Event(event) = received {
                            batch.push(event);
                        }
                        if batch.len() >= EVENTS_BATCH {
                            break;
                        }
                        next = events.try_recv();
                    }
                    let drained = batch.len() < EVENTS_BATCH;
                    let msg = Msg::Events {
                        info: Arc::clone(&info),
                        events: batch,
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                    if drained {
                        // Let events gather instead of being woken for each one: a wake
                        // per event costs the run more than the event's row.
                        std::thread::sleep(GATHER);
                    }
                }
            });
        flow
    }

    /// Marks `Crashed` the runs left open by programs that have ended since (as opening
    /// the history does); `serve` calls it as it goes. Returns how many it marked.
    ///
    /// # Errors
    /// [`HistoryError::Database`].
    pub fn sweep_crashed(&self) -> Result<usize, HistoryError> {
        let mut conn = self.reader();
        process::sweep_crashed(&mut conn).map_err(|source| HistoryError::Database {
            path: self.path.clone(),
            source,
        })
    }

    /// Files the log lines of runs under their runs in this history from now on,
    /// through the [`HistoryLayer`] the program installed with its `tracing` subscriber.
    pub fn capture_logs(&self) {
        layer::capture(self.id, self.tx.clone());
    }

    /// Waits (60 s at most) until the run `id` is written to its end: its last state
    /// event, and every log line before it. Returns whether it was.
    pub fn wait(&self, id: FlowRunId) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut finished = self
            .written
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if finished.contains(&id) {
                return true;
            }
            if *self
                .written
                .stopped
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
            {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            finished = self
                .written
                .changed
                .wait_timeout(finished, (deadline - now).min(Duration::from_millis(200)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Writes what is queued and stops the writer; later events are not recorded.
    pub fn close(&self) {
        layer::release(self.id);
        let _ = self.tx.send(Msg::Close);
        let handle = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.read.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn db_error(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Database {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.close();
    }
}

/// A connection in WAL mode that waits for other writers' locks.
fn connect(path: &Path) -> Result<Connection, HistoryError> {
    let db = |source| HistoryError::Database {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(BUSY).map_err(db)?;
    // `journal_mode` answers with the mode: read it (a plain execute would fail).
    let _: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
    Ok(conn)
}
