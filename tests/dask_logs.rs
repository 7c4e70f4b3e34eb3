//! What a task body logs on a Dask worker comes back with its attempt's end and is logged
//! in the coordinator under its task run.
//!
//! A test binary of its own: the test installs a scoped `tracing` subscriber, and other
//! tests of the same process (with none) would race with it on `tracing`'s global cache
//! of which spans are enabled.
//!
//! Like `tests/dask.rs`, it needs Python with Dask's client (see there).

mod common;

use common::python;
use tideflow::dask::DaskExecutor;
use tideflow::prelude::*;

/// What each Dask worker runs: this binary, this test only.
#[test]
fn tideflow_worker() {
    tideflow::worker::serve_if_worker();
}

/// Logs a line on whichever worker runs it.
#[task]
fn say(x: u64) -> u64 {
    tracing::info!(x, "hello from a dask worker");
    x
}

flow! {
    fn greeting() -> u64 {
        say(7)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_task_logs_on_a_worker_is_logged_here_under_its_task_run() {
    use tracing::instrument::WithSubscriber as _;
    let Some(python) = python() else {
        return;
    };
    let logs = common::Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let run = greeting()
        .executor(DaskExecutor::local(1).python(python))
        .run()
        .with_subscriber(subscriber)
        .await;
    assert_eq!(run.output(), Ok(&7));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("hello from a dask worker"))
        .unwrap_or_else(|| panic!("the worker's line is not in the logs:\n{text}"));
    assert!(line.contains(&format!("task_run_id={}-0", run.id())), "{line}");
    assert!(line.contains("x=7"), "{line}");
}
