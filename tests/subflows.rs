//! Subflows: a flow called as a task of another flow runs as its own flow run, whose
//! states and task runs are visible in the parent's run result.
//!
//! The flows run on the executor `TIDEFLOW_TEST_EXECUTOR` names: the local one by default,
//! a local Dask cluster with `dask-local:2` (`.ci/run` runs them both ways). A subflow
//! runs here and its tasks on the parent's executor.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use tideflow::prelude::*;

/// What each Dask worker runs when the tests use a Dask cluster.
#[test]
fn tideflow_worker() {
    tideflow::worker::serve_if_worker();
}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[task]
fn square(x: u64) -> u64 {
    x * x
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

flow! {
    /// Sum of the squares of 1..=n.
    pub fn sum_of_squares(n: u64 = 3) -> u64 {
        let xs = numbers(n);
        let squares = square.map(xs);
        total(squares)
    }
}

#[task]
fn describe(sum: u64) -> String {
    format!("sum is {sum}")
}

flow! {
    pub fn report(n: u64 = 4) -> String {
        let sum = sum_of_squares(n);
        describe(sum)
    }
}

#[tokio::test]
async fn a_subflow_runs_as_a_task_and_its_run_is_visible_in_the_parent() {
    let run = report().executor(common::executor()).run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(run.output().map(String::as_str), Ok("sum is 30"));

    let sum = run.task("sum");
    assert_eq!(sum.state(), &State::Success);
    assert_eq!(sum.task_name(), "sum_of_squares");
    assert_eq!(sum.attempts(), 1);
    let sub = sum.subflow::<u64>().expect("the subflow's run");
    assert_eq!(sub.flow_name(), "sum_of_squares");
    assert_ne!(sub.id(), run.id(), "a subflow has a run of its own");
    let parent = sub.parent_task_run().expect("the parent's task run");
    assert_eq!(parent.flow_run, run.id());
    assert_eq!(parent.node, 0);
    assert_eq!(sub.state(), &State::Success);
    assert_eq!(sub.output(), Ok(&30));
    assert_eq!(sub.task("xs").state(), &State::Success);
    assert_eq!(sub.task("squares").children().len(), 4);
    assert!(sub
        .task("squares")
        .children()
        .iter()
        .all(|c| c.state() == &State::Success));
    assert_eq!(sub.task("total").result::<u64>(), Some(&30));
    assert!(
        run.task("describe").subflow::<()>().is_none(),
        "a plain task has no subflow run"
    );
}

#[tokio::test]
async fn a_subflow_gets_the_values_the_parent_passes() {
    let run = report()
        .with_param("n", 2)
        .expect("n")
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output().map(String::as_str), Ok("sum is 5"));
    let sub = run.task("sum").subflow::<u64>().expect("the subflow's run");
    assert_eq!(sub.task("squares").children().len(), 2);
}

#[task]
fn check(x: u64) -> Result<u64, TaskError> {
    if x == 3 {
        return Err(TaskError::fail("3 is not allowed"));
    }
    Ok(x)
}

flow! {
    pub fn checked(x: u64 = 1) -> u64 {
        check(x)
    }
}

flow! {
    pub fn checks_many(xs: Vec<u64> = vec![1, 2, 3, 4]) -> u64 {
        let checked_xs = checked.map(xs);
        total(checked_xs)
    }
}

#[tokio::test]
async fn a_mapped_subflow_runs_once_per_element_and_a_failed_one_fails_its_child() {
    let run = checks_many().executor(common::executor()).run().await;
    assert!(run.state().is_failed());
    let mapped = run.task("checked_xs");
    let states: Vec<&str> = mapped.children().iter().map(|c| c.state().name()).collect();
    assert_eq!(states, ["Success", "Success", "Failed", "Success"]);
    let failed = mapped.children()[2].state().message().expect("a message");
    let sub = mapped.child_subflow::<u64>(2).expect("child 2's subflow run");
    assert_eq!(
        failed,
        format!(
            "subflow `checked` (run {}) failed: failed task runs: `check` (Failed: 3 is not allowed)",
            sub.id()
        )
    );
    assert!(sub.state().is_failed());
    assert_eq!(sub.task("check").state().message(), Some("3 is not allowed"));
    assert_eq!(sub.parent_task_run().and_then(|t| t.map_index), Some(2));
    for i in [0usize, 1, 3] {
        let ok = mapped.child_subflow::<u64>(i).expect("a subflow run per child");
        assert_eq!(ok.output(), Ok(&(i as u64 + 1)));
    }
    assert!(run.task("total").state().is_trigger_failed());
}

static FLAKY: AtomicU32 = AtomicU32::new(0);

// Local: the subflow's two runs must count on one counter; on Dask they could run in two
// worker processes, with a counter each.
#[task(local)]
fn flaky_step() -> Result<u32, TaskError> {
    match FLAKY.fetch_add(1, Ordering::SeqCst) {
        0 => Err(TaskError::fail("first call fails")),
        n => Ok(n),
    }
}

flow! {
    pub fn flaky_sub() -> u32 {
        flaky_step()
    }
}

#[task]
fn log_it(n: u32) {
    tracing::info!(n, "logged");
}

flow! {
    pub fn retries_a_subflow() {
        let n = flaky_sub();
        log_it(n);
    }
}

#[tokio::test(start_paused = true)]
async fn a_subflow_task_is_retried_like_any_task() {
    let flow = retries_a_subflow()
        .with_task_options("n", |o| {
            o.max_retries = 1;
            o.retry_delay = std::time::Duration::from_secs(5);
        })
        .expect("n is a task of the flow")
        .executor(common::executor());
    let run = flow.run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    let n = run.task("n");
    assert_eq!(n.state(), &State::Success);
    assert_eq!(n.attempts(), 2);
    assert_eq!(n.result::<u32>(), None, "not a terminal task: released");
    let sub = n.subflow::<u32>().expect("the last attempt's run");
    assert_eq!(sub.output(), Ok(&1));
    assert_eq!(FLAKY.load(Ordering::SeqCst), 2);
}

flow! {
    pub fn sum_to(n: u64 = 3) -> u64 {
        total(numbers(n))
    }
}

flow! {
    pub fn sums(n: u64 = 3) -> u64 {
        let ns = numbers(n);
        let each = sum_to.map(ns);
        total(each)
    }
}

/// The README's example.
#[tokio::test]
async fn subflow_runs_are_in_the_parent_run() {
    let run = sums().executor(common::executor()).run().await;
    assert_eq!(run.output(), Ok(&10)); // 1 + 3 + 6
    let third = run.task("each").child_subflow::<u64>(2).expect("child 2's run");
    assert_eq!(third.output(), Ok(&6));
    assert!(third.task("numbers").state().is_success());
    assert_eq!(third.parent_task_run().and_then(|t| t.map_index), Some(2));
}

static STORED_STEPS: AtomicU32 = AtomicU32::new(0);

#[task(persist)]
fn stored_step(x: u64) -> u64 {
    STORED_STEPS.fetch_add(1, Ordering::SeqCst);
    x * 2
}

flow! {
    pub fn stored_sub(x: u64 = 1) -> u64 {
        stored_step(x)
    }
}

#[task]
fn is_even(x: u64) -> bool {
    x.is_multiple_of(2)
}

flow! {
    pub fn branchy(x: u64 = 4) -> u64 {
        let doubled = if is_even(x) { stored_sub(x) } else { square(x) };
        doubled
    }
}

#[tokio::test]
async fn a_subflow_in_a_branch_uses_the_parents_result_store_and_executor() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    // Stays on the sequential executor: the point is that the subflow inherits this one.
    let flow = branchy()
        .result_store(ResultStore::local(dir.path()))
        .executor(SequentialExecutor);
    let run = flow.run().await;
    assert_eq!(run.output(), Ok(&8));
    assert!(run.task("square").state().is_skipped());
    let sub = run
        .task("stored_sub")
        .subflow::<u64>()
        .expect("the subflow's run");
    let persisted = dir.path().join(format!("runs/{}/stored_step.json", sub.id()));
    assert_eq!(
        std::fs::read_to_string(persisted).expect("in the parent's store"),
        "8"
    );
    assert_eq!(STORED_STEPS.load(Ordering::SeqCst), 1);

    let odd = flow.with_param("x", 3).expect("x").run().await;
    assert_eq!(odd.output(), Ok(&9));
    assert!(odd.task("stored_sub").state().is_skipped());
    assert!(
        odd.task("stored_sub").subflow::<u64>().is_none(),
        "a skipped subflow did not run"
    );
    assert_eq!(STORED_STEPS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_subscriber_of_the_parent_sees_the_subflow_run_too() {
    use tideflow::event::{Delivery, Received};
    let mut flow = report().executor(common::executor());
    let mut events = flow.subscribe(Delivery::lossless(1024));
    let run = flow.run().await;
    assert!(run.state().is_success());
    let sub = run.task("sum").subflow::<u64>().expect("the subflow's run");
    drop(flow);
    let mut seen = Vec::new();
    while let Some(Received::Event(e)) = events.recv().await {
        seen.push(e);
    }
    // The subflow's run, from its start to its end, under its own id.
    let of_sub: Vec<(String, &str, &str)> = seen
        .iter()
        .filter(|e| e.flow_run_id == sub.id() && e.task.is_none())
        .map(|e| (e.flow.clone(), e.old.name(), e.new.name()))
        .collect();
    assert_eq!(
        of_sub,
        [
            ("sum_of_squares".to_owned(), "Pending", "Running"),
            ("sum_of_squares".to_owned(), "Running", "Success")
        ]
    );
    assert!(seen
        .iter()
        .any(|e| e.flow_run_id == sub.id() && e.name() == "squares[3]" && e.new.name() == "Success"));
    // And the parent's, under its own.
    assert!(seen
        .iter()
        .any(|e| e.flow_run_id == run.id() && e.task.is_none() && e.new.name() == "Success"));
}
