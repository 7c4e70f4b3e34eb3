//! The result store: task results written to local disk, for restarts and caching.
//!
//! A [`ResultStore`] is a directory:
//!
//! ```text
//! <store>/runs/<flow run id>/run.json        the flow's name and the run's parameters
//! <store>/runs/<flow run id>/<task>.json     a persisted result (`#[task(persist)]`)
//! <store>/runs/<flow run id>/<task>/<i>.json child `i` of a mapped task
//! <store>/cache/<key>.json                   a cached result and when it expires
//! ```
//!
//! Results are JSON written with serde. Every file is written to a temporary name in its
//! folder, then renamed over the final name, so a reader sees a whole result or none: a
//! process that dies mid-write leaves no half result under a real name. A result that
//! cannot be read back (a corrupt file, or a task whose output type changed) is reported
//! by the task run's name in [`FlowRun::warnings`](crate::FlowRun::warnings) and the task
//! runs again; nothing else is lost.
//!
//! A cache key is a 128-bit hash (XXH3) of the task's cache name (its `cache_key`, or its
//! key `module::function`) and the JSON of each of its inputs, so tasks that share a
//! `cache_key` share results for equal inputs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::context::FlowRunId;
use crate::error::FlowError;
use crate::task::TaskCodec;
use crate::value::Value;

/// Where task results are written: a directory on local disk.
///
/// By default, `$TIDEFLOW_HOME/results`, where `TIDEFLOW_HOME` defaults to `~/.tideflow`
/// (`./.tideflow` when there is no home directory). Set another one per flow with
/// [`Flow::result_store`](crate::Flow::result_store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultStore {
    root: Arc<Path>,
}

impl ResultStore {
    /// A store in `dir` (created on first write).
    pub fn local(dir: impl Into<PathBuf>) -> Self {
        ResultStore {
            root: Arc::from(dir.into()),
        }
    }

    /// The default store: `$TIDEFLOW_HOME/results`, `~/.tideflow/results` when
    /// `TIDEFLOW_HOME` is not set.
    pub fn default_location() -> Self {
        let home = match std::env::var_os("TIDEFLOW_HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h),
            _ => match std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")) {
                Some(h) if !h.is_empty() => PathBuf::from(h).join(".tideflow"),
                _ => PathBuf::from(".tideflow"),
            },
        };
        ResultStore::local(home.join("results"))
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The persisted result of the task run `task` (its binding in the flow; child
    /// `index` of a mapped task) of the run `run`, as the JSON written; `None` when none
    /// was persisted.
    pub fn read_persisted(&self, run: FlowRunId, task: &str, index: Option<u32>) -> Option<Vec<u8>> {
        let stem = self.run_dir(run).join(file_stem(task));
        let path = match index {
            Some(i) => stem.join(format!("{i}.json")),
            None => stem.with_extension("json"),
        };
        std::fs::read(path).ok()
    }

    /// The folder of one flow run's persisted results.
    pub fn run_dir(&self, run: FlowRunId) -> PathBuf {
        self.root.join("runs").join(run.to_string())
    }

    fn cache_file(&self, key: u128) -> PathBuf {
        self.root.join("cache").join(format!("{key:032x}.json"))
    }

    /// Reads the record of run `run` of flow `flow`: its parameter values.
    pub(crate) fn read_run(&self, flow: &str, run: FlowRunId) -> Result<RunManifest, FlowError> {
        let path = self.run_dir(run).join("run.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FlowError::RunNotFound {
                    flow: flow.to_owned(),
                    run: run.to_string(),
                    store: self.root.display().to_string(),
                })
            }
            Err(e) => {
                return Err(FlowError::RunRecordUnreadable {
                    run: run.to_string(),
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        let manifest: RunManifest =
            serde_json::from_slice(&bytes).map_err(|e| FlowError::RunRecordUnreadable {
                run: run.to_string(),
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        if manifest.flow != flow {
            return Err(FlowError::RunOfAnotherFlow {
                flow: flow.to_owned(),
                run: run.to_string(),
                other: manifest.flow,
            });
        }
        Ok(manifest)
    }

    /// Writes the record of a run that persists results (so it can be restarted).
    pub(crate) fn write_run(&self, run: FlowRunId, manifest: &RunManifest) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
        write_atomic(&self.run_dir(run).join("run.json"), &bytes)
    }
}

impl Default for ResultStore {
    fn default() -> Self {
        Self::default_location()
    }
}

/// What is stored of a run besides its results.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunManifest {
    pub(crate) flow: String,
    pub(crate) params: serde_json::Map<String, serde_json::Value>,
}

/// One cached result, as written.
#[derive(Serialize)]
struct CacheEntryOut<'a> {
    /// The cache name it was filed under.
    task: &'a str,
    /// When it expires, in milliseconds since the Unix epoch (`None`: never).
    expires_at_ms: Option<u64>,
    value: &'a serde_json::value::RawValue,
}

/// One cached result, as read.
#[derive(Deserialize)]
struct CacheEntryIn<'a> {
    expires_at_ms: Option<u64>,
    #[serde(borrow)]
    value: &'a serde_json::value::RawValue,
}

/// Writes `bytes` to `path` atomically: to a temporary file in the same folder, then
/// renamed over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a result file needs a folder"))?;
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("result");
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Wall-clock time for cache expiry, read through tokio's clock, so that tests with a
/// paused clock (`tokio::time::advance`) move it too.
pub(crate) fn wall_now() -> SystemTime {
    static ANCHOR: OnceLock<(SystemTime, std::time::Instant)> = OnceLock::new();
    let (system, instant) = *ANCHOR.get_or_init(|| (SystemTime::now(), std::time::Instant::now()));
    system
        + tokio::time::Instant::now()
            .into_std()
            .saturating_duration_since(instant)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A file name for a task's name: letters, digits, `_` and `-` kept, the rest `_`.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What one flow run stores, shared by its task runs.
#[derive(Debug)]
pub(crate) struct RunStore {
    pub(crate) store: ResultStore,
    run_dir: PathBuf,
    /// Results that could not be read or written, by task run.
    warnings: Mutex<Vec<String>>,
}

impl RunStore {
    pub(crate) fn new(store: ResultStore, run: FlowRunId) -> Self {
        RunStore {
            run_dir: store.run_dir(run),
            store,
            warnings: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn warn(&self, message: String) {
        tracing::warn!(target: "tideflow", "{message}");
        self.warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message);
    }

    pub(crate) fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// How one task (a node of the flow) stores its results.
#[derive(Debug)]
pub(crate) struct NodeStore {
    pub(crate) run: Arc<RunStore>,
    pub(crate) codec: &'static TaskCodec,
    /// The folder or file stem of its persisted results in this run.
    pub(crate) stem: PathBuf,
    /// Write each successful result there.
    pub(crate) persist: bool,
    /// Read the persisted result before running (a restarted run).
    pub(crate) restore: bool,
    /// The cache name results are filed under (`None`: not cached).
    pub(crate) cache_name: Option<&'static str>,
    /// How long a cached result is valid (`None`: for ever).
    pub(crate) cache_for: Option<Duration>,
}

/// What a lookup before a task run's first attempt found.
pub(crate) enum Lookup {
    /// A result: the run ends `Cached`.
    Found(Value),
    /// None; the cache key to file the result under, for a cached task.
    Missing(Option<u128>),
}

impl NodeStore {
    /// Where the results of the task named `name` (its binding) are persisted in this run.
    pub(crate) fn persist_stem(run: &RunStore, name: &str) -> PathBuf {
        run.run_dir.join(file_stem(name))
    }

    fn result_path(&self, stem: &Path, index: Option<u32>) -> PathBuf {
        match index {
            Some(i) => stem.join(format!("{i}.json")),
            None => stem.with_extension("json"),
        }
    }

    /// Looks for a result of task run `task` (`clean[3]`) before it runs: its persisted
    /// result in a restarted run, then a valid cached result for these inputs.
    pub(crate) fn lookup(&self, task: &str, index: Option<u32>, inputs: &[Value]) -> Lookup {
        if self.restore {
            let path = self.result_path(&self.stem, index);
            let stored = self.read("stored", task, &path);
            if let Some(v) = stored
                .and_then(|bytes| self.decode("stored", task, &path, (self.codec.decode_output)(&bytes)))
            {
                return Lookup::Found(v);
            }
        }
        let Some(name) = self.cache_name else {
            return Lookup::Missing(None);
        };
        let key = match self.cache_key(name, inputs) {
            Ok(k) => k,
            Err(e) => {
                self.run.warn(format!(
                    "`{task}` is not cached: an input cannot be written as JSON to compute its cache key: {e}"
                ));
                return Lookup::Missing(None);
            }
        };
        let path = self.run.store.cache_file(key);
        let Some(bytes) = self.read("cached", task, &path) else {
            return Lookup::Missing(Some(key));
        };
        let valid = serde_json::from_slice::<CacheEntryIn<'_>>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(
                |entry| match entry.expires_at_ms.is_none_or(|at| millis(wall_now()) < at) {
                    true => (self.codec.decode_output)(entry.value.get().as_bytes()).map(Some),
                    false => Ok(None),
                },
            );
        match self.decode("cached", task, &path, valid).flatten() {
            Some(v) => Lookup::Found(v),
            None => Lookup::Missing(Some(key)),
        }
    }

    /// The bytes of a `kind` ("stored", "cached") result file: `None` when there is none,
    /// or, reported, when it cannot be read.
    fn read(&self, kind: &str, task: &str, path: &Path) -> Option<Vec<u8>> {
        match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => self.decode(kind, task, path, Err(e.to_string())),
        }
    }

    /// A decoded result, or `None` with the reason reported by the task run's name.
    fn decode<T>(&self, kind: &str, task: &str, path: &Path, decoded: Result<T, String>) -> Option<T> {
        decoded
            .map_err(|e| {
                self.run.warn(format!(
                    "the {kind} result of `{task}` ({}) cannot be read: {e}; `{task}` runs again",
                    path.display()
                ))
            })
            .ok()
    }

    /// Writes a successful result: persisted for the run, and cached under `cache_key`.
    /// A result that cannot be written is reported; the run goes on with it in memory.
    pub(crate) fn save(&self, task: &str, index: Option<u32>, value: &Value, cache_key: Option<u128>) {
        if !self.persist && cache_key.is_none() {
            return;
        }
        let mut json = Vec::new();
        if let Err(e) = (self.codec.encode_output)(value, &mut json) {
            self.run.warn(format!(
                "the result of `{task}` is not stored: it cannot be written as JSON: {e}"
            ));
            return;
        }
        if self.persist {
            let path = self.result_path(&self.stem, index);
            if let Err(e) = write_atomic(&path, &json) {
                self.run.warn(format!(
                    "the result of `{task}` is not persisted ({}): {e}; a restart runs it again",
                    path.display()
                ));
            }
        }
        if let (Some(key), Some(name)) = (cache_key, self.cache_name) {
            let path = self.run.store.cache_file(key);
            let written = std::str::from_utf8(&json)
                .map_err(io::Error::other)
                .and_then(|text| {
                    serde_json::value::RawValue::from_string(text.to_owned()).map_err(io::Error::other)
                })
                .and_then(|raw| {
                    let entry = CacheEntryOut {
                        task: name,
                        expires_at_ms: self.cache_for.map(|d| millis(wall_now() + d)),
                        value: &raw,
                    };
                    serde_json::to_vec(&entry).map_err(io::Error::other)
                })
                .and_then(|bytes| write_atomic(&path, &bytes));
            if let Err(e) = written {
                self.run.warn(format!(
                    "the result of `{task}` is not cached ({}): {e}",
                    path.display()
                ));
            }
        }
    }

    /// The cache key of a task run: its cache name and the JSON of each input.
    fn cache_key(&self, name: &str, inputs: &[Value]) -> Result<u128, String> {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        let mut json = Vec::new();
        for (encode, v) in self.codec.encode_inputs.iter().zip(inputs) {
            json.clear();
            encode(v, &mut json)?;
            bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&json);
        }
        Ok(xxhash_rust::xxh3::xxh3_128(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("clean"), "clean");
        assert_eq!(file_stem("if flag"), "if_flag");
        assert_eq!(file_stem("../x"), "___x");
        assert_eq!(file_stem("clean-2"), "clean-2");
    }

    #[test]
    fn atomic_writes_leave_only_the_final_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("a").join("b.json");
        write_atomic(&path, b"1").expect("written");
        write_atomic(&path, b"2").expect("written again");
        assert_eq!(std::fs::read(&path).expect("read"), b"2");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .expect("listed")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b.json")]);
    }
}
