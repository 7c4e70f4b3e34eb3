//! Caching (`cache_for`, `cache_key`), result persistence (`persist`, `persist_results`)
//! and restarts of failed runs: exact states, results, call counts and files on disk.
//! Every store lives in a temporary folder of its own; expiry runs on tokio's paused clock.
//!
//! The flows run on the executor `TIDEFLOW_TEST_EXECUTOR` names: the local one by default,
//! a local Dask cluster with `dask-local:2` (`.ci/run` runs them both ways). Stores are
//! read and written here whatever the executor.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tideflow::prelude::*;

/// What each Dask worker runs when the tests use a Dask cluster.
#[test]
fn tideflow_worker() {
    tideflow::worker::serve_if_worker();
}

/// The attempts of each child of a mapped task.
fn child_attempts(task: &TaskRun) -> Vec<u32> {
    task.children().iter().map(|c| c.attempts()).collect()
}

/// A broken source fixed between a run and its restart, as a file named by the run: task
/// bodies see it in any process of this machine (on a local Dask cluster they run in
/// worker processes, where a static of this one never changes). Removed on drop.
struct Fix(PathBuf);

impl Fix {
    fn path(run: tideflow::FlowRunId) -> PathBuf {
        std::env::temp_dir().join(format!("tideflow-test-fixed-{run}"))
    }

    /// Fixes the source for the run `run`.
    fn apply(run: tideflow::FlowRunId) -> Fix {
        let path = Fix::path(run);
        std::fs::write(&path, b"fixed").expect("the fix is written");
        Fix(path)
    }

    /// Whether the source is fixed for the run of this task run.
    fn applied(ctx: &TaskContext) -> bool {
        Fix::path(ctx.flow_run_id()).exists()
    }
}

impl Drop for Fix {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn store() -> (tempfile::TempDir, ResultStore) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = ResultStore::local(dir.path());
    (dir, store)
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

// ---- caching ----

static SQUARE_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h")]
fn cached_square(x: u64) -> u64 {
    SQUARE_CALLS.fetch_add(1, Ordering::SeqCst);
    x * x
}

flow! {
    fn square_flow(x: u64 = 3) -> u64 {
        cached_square(x)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cache_hit_ends_cached_without_running_the_body_until_it_expires() {
    let (_dir, store) = store();
    let flow = square_flow()
        .result_store(store.clone())
        .executor(common::executor());

    let first = flow.run().await;
    assert_eq!(first.task("cached_square").state(), &State::Success);
    assert_eq!(first.task("cached_square").attempts(), 1);
    assert_eq!(first.output(), Ok(&9));
    common::assert_calls(SQUARE_CALLS.load(Ordering::SeqCst), 1);

    let second = flow.run().await;
    assert_eq!(second.task("cached_square").state(), &State::Cached);
    assert_eq!(
        second.task("cached_square").attempts(),
        0,
        "a cache hit does not run the body"
    );
    assert_eq!(second.output(), Ok(&9));
    assert!(second.state().is_success());
    common::assert_calls(SQUARE_CALLS.load(Ordering::SeqCst), 1);

    // Other inputs are another key.
    let other = flow.clone().with_param("x", 4).expect("x").run().await;
    assert_eq!(other.task("cached_square").state(), &State::Success);
    assert_eq!(other.task("cached_square").attempts(), 1);
    assert_eq!(other.output(), Ok(&16));
    common::assert_calls(SQUARE_CALLS.load(Ordering::SeqCst), 2);

    // Still valid just before the hour is up...
    tokio::time::advance(Duration::from_secs(59 * 60)).await;
    let third = flow.run().await;
    assert_eq!(third.task("cached_square").state(), &State::Cached);
    assert_eq!(third.task("cached_square").attempts(), 0);
    common::assert_calls(SQUARE_CALLS.load(Ordering::SeqCst), 2);

    // ...expired after it: the body runs and caches anew.
    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    let fourth = flow.run().await;
    assert_eq!(fourth.task("cached_square").state(), &State::Success);
    assert_eq!(fourth.task("cached_square").attempts(), 1);
    assert_eq!(fourth.output(), Ok(&9));
    common::assert_calls(SQUARE_CALLS.load(Ordering::SeqCst), 3);
    let fifth = flow.run().await;
    assert_eq!(fifth.task("cached_square").state(), &State::Cached);
    assert_eq!(fifth.task("cached_square").attempts(), 0);
    common::assert_calls(SQUARE_CALLS.load(Ordering::SeqCst), 3);
    assert!(fifth.warnings().is_empty(), "{:?}", fifth.warnings());
}

static SHARED_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(cache_key = "word-length")]
fn length_a(word: String) -> usize {
    SHARED_CALLS.fetch_add(1, Ordering::SeqCst);
    word.len()
}

#[task(cache_key = "word-length")]
async fn length_b(word: String) -> usize {
    SHARED_CALLS.fetch_add(1, Ordering::SeqCst);
    word.len() + 1000 // never returned when the cache is shared
}

flow! {
    fn shared_cache(word: String = "tideflow".to_owned()) -> usize {
        let a = length_a(word);
        length_b(word).after(a)
    }
}

#[tokio::test]
async fn tasks_sharing_a_cache_key_share_results_for_equal_inputs() {
    let (_dir, store) = store();
    let run = shared_cache()
        .result_store(store)
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.task("a").state(), &State::Success);
    assert_eq!(run.task("length_b").state(), &State::Cached);
    assert_eq!(run.output(), Ok(&8));
    assert_eq!(
        (run.task("a").attempts(), run.task("length_b").attempts()),
        (1, 0)
    );
    common::assert_calls(SHARED_CALLS.load(Ordering::SeqCst), 1);
}

static MAPPED_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1d")]
fn cached_double(x: u32) -> u32 {
    MAPPED_CALLS.fetch_add(1, Ordering::SeqCst);
    x * 2
}

#[task]
fn sum(xs: Vec<u32>) -> u32 {
    xs.iter().sum()
}

flow! {
    fn doubled(xs: Vec<u32> = vec![1, 2, 3]) -> u32 {
        let ds = cached_double.map(xs);
        sum(ds)
    }
}

#[tokio::test]
async fn mapped_children_are_cached_one_by_one_and_corrupt_entries_are_rerun() {
    let (dir, store) = store();
    let flow = doubled().result_store(store).executor(common::executor());
    let run = flow.run().await;
    assert_eq!(run.output(), Ok(&12));
    assert_eq!(child_attempts(run.task("ds")), [1, 1, 1]);
    common::assert_calls(MAPPED_CALLS.load(Ordering::SeqCst), 3);

    // 2 and 3 are cached; 4 is new.
    let run = flow
        .clone()
        .with_param("xs", vec![2, 3, 4])
        .expect("xs")
        .run()
        .await;
    let states: Vec<&State> = run.task("ds").children().iter().map(|c| c.state()).collect();
    assert_eq!(states, [&State::Cached, &State::Cached, &State::Success]);
    assert_eq!(child_attempts(run.task("ds")), [0, 0, 1]);
    assert_eq!(run.output(), Ok(&18));
    common::assert_calls(MAPPED_CALLS.load(Ordering::SeqCst), 4);

    // Damage every cache entry: each is reported by name, and each child runs again.
    let cache = dir.path().join("cache");
    let entries = files(&cache);
    assert_eq!(entries.len(), 4, "one entry per distinct input: {entries:?}");
    for e in &entries {
        std::fs::write(cache.join(e), b"{\"expires_at_ms\": 1, \"value\": ").expect("damaged");
    }
    let run = flow.run().await;
    assert_eq!(run.output(), Ok(&12));
    let states: Vec<&State> = run.task("ds").children().iter().map(|c| c.state()).collect();
    assert_eq!(states, [&State::Success, &State::Success, &State::Success]);
    assert_eq!(child_attempts(run.task("ds")), [1, 1, 1]);
    common::assert_calls(MAPPED_CALLS.load(Ordering::SeqCst), 7);
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    for (i, w) in warnings.iter().enumerate() {
        assert!(
            w.starts_with(&format!("the cached result of `ds[{i}]` ("))
                && w.ends_with("`ds[{i}]` runs again".replace("{i}", &i.to_string()).as_str()),
            "{w}"
        );
    }
    // Rewritten whole: the next run hits again.
    let run = flow.run().await;
    assert!(run
        .task("ds")
        .children()
        .iter()
        .all(|c| c.state() == &State::Cached));
    assert_eq!(child_attempts(run.task("ds")), [0, 0, 0]);
    assert!(run.warnings().is_empty(), "{:?}", run.warnings());
    common::assert_calls(MAPPED_CALLS.load(Ordering::SeqCst), 7);
}

/// A run in another process: the cache is on disk, so it is shared across processes.
#[tokio::test]
async fn cached_results_are_shared_across_processes() {
    let (dir, _store) = store();
    let exe = std::env::current_exe().expect("the test binary");
    let child = |expect: &str| {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "cache_child_process",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TIDEFLOW_TEST_CACHE_DIR", dir.path())
            .env("TIDEFLOW_TEST_EXPECT", expect)
            .output()
            .expect("the child process runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    };
    child("Success");
    child("Cached");
}

static CHILD_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h")]
fn cached_in_child(x: u64) -> u64 {
    CHILD_CALLS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

flow! {
    fn child_flow(x: u64 = 41) -> u64 {
        cached_in_child(x)
    }
}

/// Run by `cached_results_are_shared_across_processes` in a process of its own.
#[tokio::test]
#[ignore = "run by cached_results_are_shared_across_processes"]
async fn cache_child_process() {
    let (Some(dir), Some(expect)) = (
        std::env::var_os("TIDEFLOW_TEST_CACHE_DIR"),
        std::env::var("TIDEFLOW_TEST_EXPECT").ok(),
    ) else {
        return;
    };
    let run = child_flow()
        .result_store(ResultStore::local(dir))
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&42));
    assert_eq!(run.task("cached_in_child").state().name(), expect);
    let calls = if expect == "Cached" { 0 } else { 1 };
    assert_eq!(run.task("cached_in_child").attempts(), calls);
    common::assert_calls(CHILD_CALLS.load(Ordering::SeqCst), calls);
}

// ---- persistence and restart ----

static LOAD_CALLS: AtomicU32 = AtomicU32::new(0);
static CLEAN_CALLS: AtomicU32 = AtomicU32::new(0);
static TOTAL_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(persist)]
fn load(n: u32) -> Vec<u32> {
    LOAD_CALLS.fetch_add(1, Ordering::SeqCst);
    (0..n).collect()
}

#[task(persist)]
fn clean(x: u32, ctx: &TaskContext) -> Result<u32, TaskError> {
    CLEAN_CALLS.fetch_add(1, Ordering::SeqCst);
    if x % 2 == 1 && !Fix::applied(ctx) {
        return Err(TaskError::fail(format!("row {x} is malformed")));
    }
    Ok(x * 10)
}

#[task]
fn total(xs: Vec<u32>) -> u32 {
    TOTAL_CALLS.fetch_add(1, Ordering::SeqCst);
    xs.iter().sum()
}

flow! {
    fn pipeline(n: u32 = 4) -> u32 {
        let rows = load(n);
        let cleaned = clean.map(rows);
        total(cleaned)
    }
}

#[tokio::test]
async fn a_restarted_run_reruns_only_what_did_not_succeed() {
    let (dir, store) = store();
    let flow = pipeline()
        .result_store(store.clone())
        .executor(common::executor());
    // Run with n = 5: the restart must use the run's own parameters.
    let first = flow.clone().with_param("n", 5).expect("n").run().await;
    assert!(first.state().is_failed());
    let cleaned: Vec<&str> = first
        .task("cleaned")
        .children()
        .iter()
        .map(|c| c.state().name())
        .collect();
    assert_eq!(cleaned, ["Success", "Failed", "Success", "Failed", "Success"]);
    assert!(first.task("total").state().is_trigger_failed());
    assert_eq!(child_attempts(first.task("cleaned")), [1, 1, 1, 1, 1]);
    assert_eq!(
        (first.task("rows").attempts(), first.task("total").attempts()),
        (1, 0)
    );
    common::assert_calls(
        (
            LOAD_CALLS.load(Ordering::SeqCst),
            CLEAN_CALLS.load(Ordering::SeqCst),
            TOTAL_CALLS.load(Ordering::SeqCst),
        ),
        (1, 5, 0),
    );
    let run_dir = format!("runs/{}", first.id());
    assert_eq!(
        files(dir.path()),
        [
            format!("{run_dir}/cleaned/0.json"),
            format!("{run_dir}/cleaned/2.json"),
            format!("{run_dir}/cleaned/4.json"),
            format!("{run_dir}/rows.json"),
            format!("{run_dir}/run.json"),
        ],
        "persisted results, written whole (no temporary file left)"
    );
    let rows = std::fs::read_to_string(dir.path().join(&run_dir).join("rows.json")).expect("rows");
    assert_eq!(rows, "[0,1,2,3,4]");

    // The source is fixed; restart the failed run.
    let _fix = Fix::apply(first.id());
    let again = flow.restart(first.id()).await.expect("the run restarts");
    assert_eq!(again.id(), first.id(), "a restart continues the same run");
    assert!(again.state().is_success(), "{}", again.summary());
    assert_eq!(again.task("rows").state(), &State::Cached);
    let cleaned: Vec<&str> = again
        .task("cleaned")
        .children()
        .iter()
        .map(|c| c.state().name())
        .collect();
    assert_eq!(cleaned, ["Cached", "Success", "Cached", "Success", "Cached"]);
    assert_eq!(again.output(), Ok(&100));
    assert_eq!(
        (
            again.task("rows").attempts(),
            child_attempts(again.task("cleaned")),
            again.task("total").attempts()
        ),
        (0, vec![0, 1, 0, 1, 0], 1),
        "only the two failed children and the task after them ran"
    );
    common::assert_calls(
        (
            LOAD_CALLS.load(Ordering::SeqCst),
            CLEAN_CALLS.load(Ordering::SeqCst),
            TOTAL_CALLS.load(Ordering::SeqCst),
        ),
        (1, 7, 1),
    );
    assert!(again.warnings().is_empty(), "{:?}", again.warnings());

    // Restarted once more: everything persisted is reused; `total` (not persisted) runs.
    let third = flow.restart(first.id()).await.expect("the run restarts again");
    assert_eq!(third.output(), Ok(&100));
    assert_eq!(third.task("rows").state(), &State::Cached);
    assert!(third
        .task("cleaned")
        .children()
        .iter()
        .all(|c| c.state() == &State::Cached));
    assert_eq!(third.task("total").state(), &State::Success);
    assert_eq!(
        (
            third.task("rows").attempts(),
            child_attempts(third.task("cleaned")),
            third.task("total").attempts()
        ),
        (0, vec![0; 5], 1)
    );
    common::assert_calls(
        (
            LOAD_CALLS.load(Ordering::SeqCst),
            CLEAN_CALLS.load(Ordering::SeqCst),
            TOTAL_CALLS.load(Ordering::SeqCst),
        ),
        (1, 7, 2),
    );
}

static WIDE_CALLS: AtomicU32 = AtomicU32::new(0);

#[task]
fn numbers(n: u32) -> Vec<u32> {
    WIDE_CALLS.fetch_add(1, Ordering::SeqCst);
    (1..=n).collect()
}

#[task]
fn plus_one(x: u32) -> u32 {
    WIDE_CALLS.fetch_add(100, Ordering::SeqCst);
    x + 1
}

#[task(persist = false)]
fn never_persisted(xs: Vec<u32>) -> u32 {
    WIDE_CALLS.fetch_add(10_000, Ordering::SeqCst);
    xs.len() as u32
}

#[task]
fn flaky_report(count: u32, xs: Vec<u32>, ctx: &TaskContext) -> Result<String, TaskError> {
    if !Fix::applied(ctx) {
        return Err(TaskError::fail("the report server is down"));
    }
    Ok(format!("{count} values, sum {}", xs.iter().sum::<u32>()))
}

flow! {
    fn wide(n: u32 = 3) -> String {
        let xs = numbers(n);
        let ys = plus_one.map(xs);
        let count = never_persisted(ys);
        flaky_report(count, ys)
    }
}

#[tokio::test]
async fn the_flow_wide_switch_persists_every_task_but_those_that_opt_out() {
    let (dir, store) = store();
    let flow = wide()
        .persist_results()
        .result_store(store.clone())
        .executor(common::executor());
    let first = flow.run().await;
    assert!(first.state().is_failed());
    assert_eq!(
        first.task("flaky_report").state().message(),
        Some("the report server is down")
    );
    assert_eq!(
        (
            first.task("xs").attempts(),
            child_attempts(first.task("ys")),
            first.task("count").attempts(),
            first.task("flaky_report").attempts()
        ),
        (1, vec![1, 1, 1], 1, 1)
    );
    common::assert_calls(WIDE_CALLS.load(Ordering::SeqCst), 1 + 300 + 10_000);
    let run_dir = format!("runs/{}", first.id());
    assert_eq!(
        files(dir.path()),
        [
            format!("{run_dir}/run.json"),
            format!("{run_dir}/xs.json"),
            format!("{run_dir}/ys/0.json"),
            format!("{run_dir}/ys/1.json"),
            format!("{run_dir}/ys/2.json"),
        ]
    );
    let _fix = Fix::apply(first.id());
    // Restarted by a flow value without the switch: stored results are reused all the same.
    let again = wide()
        .result_store(store)
        .executor(common::executor())
        .restart(first.id())
        .await
        .expect("restarts");
    assert_eq!(again.output().map(String::as_str), Ok("3 values, sum 9"));
    assert_eq!(again.task("xs").state(), &State::Cached);
    assert_eq!(again.task("count").state(), &State::Success);
    assert_eq!(
        (
            again.task("xs").attempts(),
            child_attempts(again.task("ys")),
            again.task("count").attempts(),
            again.task("flaky_report").attempts()
        ),
        (0, vec![0, 0, 0], 1, 1),
        "only the opted-out task and the failed one ran again"
    );
    common::assert_calls(WIDE_CALLS.load(Ordering::SeqCst), 1 + 300 + 2 * 10_000);
}

static CORRUPT_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(persist)]
fn part(x: u32) -> u32 {
    CORRUPT_CALLS.fetch_add(1, Ordering::SeqCst);
    x + 100
}

#[task]
fn finish_parts(xs: Vec<u32>, ctx: &TaskContext) -> Result<u32, TaskError> {
    if !Fix::applied(ctx) {
        return Err(TaskError::fail("not yet"));
    }
    Ok(xs.iter().sum())
}

flow! {
    fn parts(xs: Vec<u32> = vec![1, 2, 3]) -> u32 {
        let ps = part.map(xs);
        finish_parts(ps)
    }
}

#[tokio::test]
async fn a_corrupt_stored_result_is_reported_by_name_and_rerun() {
    let (dir, store) = store();
    let flow = parts().result_store(store).executor(common::executor());
    let first = flow.run().await;
    assert!(first.state().is_failed());
    assert_eq!(child_attempts(first.task("ps")), [1, 1, 1]);
    common::assert_calls(CORRUPT_CALLS.load(Ordering::SeqCst), 3);
    let damaged: PathBuf = dir.path().join(format!("runs/{}/ps/1.json", first.id()));
    std::fs::write(&damaged, b"{\"truncated\":").expect("damaged");

    let _fix = Fix::apply(first.id());
    let again = flow.restart(first.id()).await.expect("restarts");
    assert_eq!(again.output(), Ok(&306));
    let states: Vec<&str> = again
        .task("ps")
        .children()
        .iter()
        .map(|c| c.state().name())
        .collect();
    assert_eq!(states, ["Cached", "Success", "Cached"]);
    assert_eq!(
        child_attempts(again.task("ps")),
        [0, 1, 0],
        "only the damaged one ran again"
    );
    common::assert_calls(CORRUPT_CALLS.load(Ordering::SeqCst), 4);
    let warnings = again.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("the stored result of `ps[1]` ("),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("ps/1.json"), "{}", warnings[0]);
    assert!(warnings[0].contains("not a valid `u32`"), "{}", warnings[0]);
    assert!(warnings[0].ends_with("; `ps[1]` runs again"), "{}", warnings[0]);
    assert!(again.summary().contains("warning: the stored result of `ps[1]`"));
    // Rewritten by the rerun.
    assert_eq!(std::fs::read_to_string(&damaged).expect("rewritten"), "102");
}

#[task(persist)]
fn kept(x: u32) -> u32 {
    x
}

flow! {
    fn other(x: u32 = 1) -> u32 {
        kept(x)
    }
}

#[tokio::test]
async fn restarting_an_unknown_run_or_another_flows_run_is_an_error() {
    let (dir, store) = store();
    let unknown = tideflow::FlowRunId::new();
    let err = parts()
        .result_store(store.clone())
        .executor(common::executor())
        .restart(unknown)
        .await
        .expect_err("unknown run");
    assert_eq!(
        err.to_string(),
        format!(
            "no stored run `{unknown}` of flow `parts` in {}: only runs of flows that persist results can be \
             restarted (`#[task(persist)]` on tasks, or `Flow::persist_results()`), from the same result store",
            dir.path().display()
        )
    );
    let run = other()
        .result_store(store.clone())
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&1));
    let err = parts()
        .result_store(store.clone())
        .executor(common::executor())
        .restart(run.id())
        .await
        .expect_err("another flow");
    assert_eq!(
        err.to_string(),
        format!(
            "run `{}` is a run of flow `other`, not of flow `parts`: restart it with `other`",
            run.id()
        )
    );
    std::fs::write(
        dir.path().join(format!("runs/{}/run.json", run.id())),
        b"not json",
    )
    .expect("damaged");
    let err = other()
        .result_store(store)
        .executor(common::executor())
        .restart(run.id())
        .await
        .expect_err("damaged record");
    assert!(
        err.to_string()
            .starts_with(&format!("the stored record of run `{}` at ", run.id())),
        "{err}"
    );
}

static NOTIFIED_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "10m")]
fn cached_hello(name: String) -> String {
    NOTIFIED_CALLS.fetch_add(1, Ordering::SeqCst);
    format!("hello {name}")
}

flow! {
    fn greet(name: String = "ada".to_owned()) -> String {
        cached_hello(name)
    }
}

#[tokio::test]
async fn state_handlers_see_pending_to_cached() {
    let (_dir, store) = store();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let flow = greet()
        .result_store(store)
        .executor(common::executor())
        .on_task_state(move |c: &StateChange| {
            log.lock()
                .expect("log")
                .push(format!("{} -> {}", c.old().name(), c.new_state().name()));
        });
    let first = flow.run().await;
    assert_eq!(first.task("cached_hello").attempts(), 1);
    let run = flow.run().await;
    assert_eq!(run.output().map(String::as_str), Ok("hello ada"));
    assert_eq!(run.task("cached_hello").attempts(), 0);
    common::assert_calls(NOTIFIED_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(
        *seen.lock().expect("log"),
        ["Pending -> Running", "Running -> Success", "Pending -> Cached"]
    );
}

#[test]
fn run_ids_read_back_from_their_text() {
    let id = tideflow::FlowRunId::new();
    assert_eq!(id.to_string().parse::<tideflow::FlowRunId>(), Ok(id));
    let err = "last-tuesday"
        .parse::<tideflow::FlowRunId>()
        .expect_err("not an id");
    assert!(
        err.to_string()
            .starts_with("`last-tuesday` is not a flow run id (a UUID such as "),
        "{err}"
    );
}

static ASYNC_FETCHES: AtomicU32 = AtomicU32::new(0);

#[task(persist, cache_for = "1h")]
async fn fetch_page(url: String) -> String {
    ASYNC_FETCHES.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    format!("<html>{url}</html>")
}

flow! {
    fn crawl(url: String = "a.example".to_owned()) -> String {
        fetch_page(url)
    }
}

#[tokio::test]
async fn an_async_task_persists_and_caches_its_result() {
    let (dir, store) = store();
    let flow = crawl().result_store(store).executor(common::executor());
    let first = flow.run().await;
    assert_eq!(first.output().map(String::as_str), Ok("<html>a.example</html>"));
    assert_eq!(first.task("fetch_page").attempts(), 1);
    let persisted = dir.path().join(format!("runs/{}/fetch_page.json", first.id()));
    assert_eq!(
        std::fs::read_to_string(persisted).expect("persisted"),
        "\"<html>a.example</html>\""
    );
    let cached = files(&dir.path().join("cache"));
    assert_eq!(cached.len(), 1, "{cached:?}");
    let entry = std::fs::read_to_string(dir.path().join("cache").join(&cached[0])).expect("entry");
    assert!(
        entry.starts_with("{\"task\":\"results::fetch_page\",\"expires_at_ms\":")
            && entry.ends_with(",\"value\":\"<html>a.example</html>\"}"),
        "{entry}"
    );
    let second = flow.run().await;
    assert_eq!(second.task("fetch_page").state(), &State::Cached);
    assert_eq!(second.task("fetch_page").attempts(), 0);
    assert_eq!(second.output().map(String::as_str), Ok("<html>a.example</html>"));
    common::assert_calls(ASYNC_FETCHES.load(Ordering::SeqCst), 1);
}
