//! The engine's semantics, as a user sees them through `#[task]`, `flow!` and the run
//! result: exact states, attempts and results (Prefect's behaviour unless DESIGN.md says
//! otherwise). Delays run on tokio's paused clock.
//!
//! The tests that do not look inside the test process (a counter, a thread id) run on the
//! executor `TIDEFLOW_TEST_EXECUTOR` names: the local one by default, a local Dask cluster
//! with `dask-local:2` (`.ci/run` runs them both ways).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tideflow::prelude::*;

/// What each Dask worker runs when the tests use a Dask cluster.
#[test]
fn tideflow_worker() {
    tideflow::worker::serve_if_worker();
}

#[task]
fn add1(x: i64) -> i64 {
    x + 1
}

#[task]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[task]
fn sum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

#[task]
fn numbers(n: i64) -> Vec<i64> {
    (1..=n).collect()
}

#[task]
fn empty() -> Vec<i64> {
    Vec::new()
}

#[task]
fn fail_on_two(x: i64) -> Result<i64, TaskError> {
    if x == 2 {
        Err(TaskError::fail("two is not allowed"))
    } else {
        Ok(x)
    }
}

#[task]
fn skip_on_two(x: i64) -> Result<i64, TaskError> {
    if x == 2 {
        Err(TaskError::skip("two is skipped"))
    } else {
        Ok(x)
    }
}

#[task]
fn boom() -> Result<Vec<i64>, TaskError> {
    Err(TaskError::fail("boom"))
}

fn states(run: &TaskRun) -> Vec<&'static str> {
    run.children().iter().map(|c| c.state().name()).collect()
}

fn results(run: &TaskRun) -> Vec<Option<i64>> {
    run.children()
        .iter()
        .map(|c| c.result::<i64>().copied())
        .collect()
}

flow! {
    /// `sum(add1.map(add1.map([1, 2, 3])))`.
    fn map_reduce() -> i64 {
        sum(add1.map(add1.map([1, 2, 3])))
    }

    fn map_in_order(n: i64 = 5) -> Vec<i64> {
        let xs = numbers(n);
        add1.map(xs)
    }

    /// `n` has no default: every run sets it.
    fn map_of_required(n: i64) -> Vec<i64> {
        let xs = numbers(n);
        add1.map(xs)
    }

    fn zipped() -> Vec<i64> {
        let a = add1.map([1, 2, 3]);
        let b = add1.map([10, 20, 30]);
        add.map(a, b)
    }

    fn zipped_unequal() -> Vec<i64> {
        let a = add1.map([1, 2, 3]);
        let b = add1.map([10, 20]);
        add.map(a, b)
    }

    fn broadcast(k: i64 = 100) -> Vec<i64> {
        let xs = numbers(3);
        add.map(xs, unmapped(k))
    }

    fn child_failure() -> Vec<i64> {
        let checked = fail_on_two.map([1, 2, 3]);
        add1.map(checked)
    }

    fn child_skip() -> Vec<i64> {
        let checked = skip_on_two.map([1, 2, 3]);
        add1.map(checked)
    }

    fn empty_map() -> i64 {
        let xs = empty();
        let once = add1.map(xs);
        let twice = add1.map(once);
        sum(twice)
    }

    fn map_over_failure() -> Vec<i64> {
        let xs = boom();
        add1.map(xs)
    }

    fn reduce_after_failure() -> i64 {
        let checked = fail_on_two.map([1, 2, 3]);
        sum(checked)
    }
}

#[tokio::test]
async fn map_reduce_sums_to_twelve() {
    let run = map_reduce().executor(common::executor()).run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(run.output(), Ok(&12));
    assert_eq!(run.tasks().len(), 3);
}

#[tokio::test]
async fn map_spawns_one_child_per_element_in_order() {
    let run = map_in_order()
        .keep_results()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&vec![2, 3, 4, 5, 6]));
    let mapped = run.task("add1");
    assert_eq!(mapped.state(), &State::Mapped { children: 5 });
    assert_eq!(results(mapped), vec![Some(2), Some(3), Some(4), Some(5), Some(6)]);
    let indices: Vec<_> = mapped
        .children()
        .iter()
        .map(tideflow::ChildRun::map_index)
        .collect();
    assert_eq!(indices, vec![0, 1, 2, 3, 4]);
    assert_eq!(mapped.child_name(3), "add1[3]");
}

#[tokio::test]
async fn zip_pairs_children_by_index() {
    let run = zipped().executor(common::executor()).run().await;
    assert_eq!(run.output(), Ok(&vec![2 + 11, 3 + 21, 4 + 31]));
}

#[tokio::test]
async fn zip_of_unequal_lengths_fails_the_mapped_task_naming_both_lengths() {
    let run = zipped_unequal().executor(common::executor()).run().await;
    assert!(run.state().is_failed());
    let add = run.task("add");
    assert!(add.state().is_failed(), "{:?}", add.state());
    let message = add.state().message().unwrap_or_default();
    assert!(message.contains('3') && message.contains('2'), "{message}");
    assert!(message.contains("`a`") && message.contains("`b`"), "{message}");
    assert!(add.children().is_empty());
}

#[tokio::test]
async fn unmapped_broadcasts_one_value_to_every_child() {
    let run = broadcast()
        .with_param("k", 1000)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&vec![1001, 1002, 1003]));
}

#[tokio::test]
async fn a_failed_child_only_fails_its_own_index_downstream() {
    let run = child_failure().executor(common::executor()).run().await;
    assert!(run.state().is_failed());
    assert_eq!(states(run.task("checked")), vec!["Success", "Failed", "Success"]);
    assert_eq!(
        states(run.task("add1")),
        vec!["Success", "TriggerFailed", "Success"]
    );
    assert_eq!(results(run.task("add1")), vec![Some(2), None, Some(4)]);
    let err = run.output().unwrap_err().to_string();
    assert!(
        err.contains("checked[1]") && err.contains("two is not allowed"),
        "{err}"
    );
}

#[tokio::test]
async fn a_skipped_child_only_skips_its_own_index_and_the_flow_succeeds() {
    let run = child_skip().executor(common::executor()).run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(states(run.task("checked")), vec!["Success", "Skipped", "Success"]);
    assert_eq!(states(run.task("add1")), vec!["Success", "Skipped", "Success"]);
    assert_eq!(run.output(), Ok(&vec![2, 4]));
}

#[tokio::test]
async fn mapping_an_empty_list_gives_zero_children_and_an_empty_reduce() {
    let run = empty_map().executor(common::executor()).run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(run.task("once").state(), &State::Mapped { children: 0 });
    assert_eq!(run.task("twice").state(), &State::Mapped { children: 0 });
    assert_eq!(run.task("sum").state(), &State::Success);
    assert_eq!(run.output(), Ok(&0));
}

#[tokio::test]
async fn mapping_over_a_failed_upstream_is_trigger_failed() {
    let run = map_over_failure().executor(common::executor()).run().await;
    assert!(run.state().is_failed());
    assert!(run.task("xs").state().is_failed());
    assert!(
        run.task("add1").state().is_trigger_failed(),
        "{:?}",
        run.task("add1").state()
    );
    assert!(run.task("add1").children().is_empty());
}

#[tokio::test]
async fn a_reducer_is_trigger_failed_when_a_child_failed() {
    let run = reduce_after_failure().executor(common::executor()).run().await;
    assert!(run.state().is_failed());
    assert!(
        run.task("sum").state().is_trigger_failed(),
        "{:?}",
        run.task("sum").state()
    );
    assert_eq!(run.task("sum").attempts(), 0);
}

// ---- triggers and reference tasks ----

#[task]
fn fails() -> Result<i64, TaskError> {
    Err(TaskError::fail("t1 failed"))
}

#[task]
fn after_ok(x: i64) -> i64 {
    x
}

#[task(trigger = all_failed)]
fn on_failure() -> String {
    "cleaned up".to_owned()
}

#[task]
fn constant_one() -> i64 {
    1
}

flow! {
    fn t1_fails() -> i64 {
        let t1 = fails();
        after_ok(t1)
    }

    fn recovers() -> String {
        let t1 = fails();
        on_failure().after(t1)
    }

    fn two_branches() {
        let t1 = fails();
        let t2 = constant_one();
        let t3 = after_ok(t2);
    }
}

#[tokio::test]
async fn a_failed_upstream_makes_downstream_trigger_failed_and_the_flow_failed() {
    let run = t1_fails().executor(common::executor()).run().await;
    assert!(run.task("t1").state().is_failed());
    assert_eq!(run.task("t1").state().message(), Some("t1 failed"));
    assert!(run.task("after_ok").state().is_trigger_failed());
    assert!(run.state().is_failed());
    let err = run.output().unwrap_err().to_string();
    assert_eq!(
        err,
        "flow `t1_fails` failed: `t1` (Failed: t1 failed); 1 downstream task run did not run (TriggerFailed)"
    );
    assert_eq!(
        run.failed_tasks().len(),
        2,
        "failed_tasks() lists every failed run"
    );
}

#[tokio::test]
async fn all_failed_trigger_runs_after_a_failure_and_the_flow_succeeds() {
    let run = recovers().executor(common::executor()).run().await;
    assert!(run.task("t1").state().is_failed());
    assert_eq!(run.task("on_failure").state(), &State::Success);
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(run.output(), Ok(&"cleaned up".to_owned()));
}

#[tokio::test]
async fn reference_tasks_decide_the_flow_state() {
    let by_terminals = two_branches().executor(common::executor()).run().await;
    assert!(by_terminals.state().is_failed(), "t1 is terminal and failed");
    let by_t3 = two_branches()
        .reference_tasks(["t3"])
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert!(by_t3.state().is_success());
    let unknown = two_branches().reference_tasks(["nope"]).unwrap_err();
    assert!(unknown.to_string().contains("`t3`"), "{unknown}");
}

#[task(trigger = all_successful)]
fn t_all_successful() -> u8 {
    1
}
#[task(trigger = all_finished)]
fn t_all_finished() -> u8 {
    2
}
#[task(trigger = always_run)]
fn t_always_run() -> u8 {
    3
}
#[task(trigger = any_successful)]
fn t_any_successful() -> u8 {
    4
}
#[task(trigger = any_failed)]
fn t_any_failed() -> u8 {
    5
}
#[task(trigger = all_failed)]
fn t_all_failed() -> u8 {
    6
}

flow! {
    fn no_upstreams() {
        t_all_successful();
        t_all_finished();
        t_always_run();
        t_any_successful();
        t_any_failed();
        t_all_failed();
    }
}

#[tokio::test]
async fn every_trigger_passes_with_no_upstreams() {
    let run = no_upstreams().executor(common::executor()).run().await;
    assert!(run.state().is_success());
    let got: Vec<(&str, Option<u8>)> = run
        .tasks()
        .iter()
        .map(|t| (t.state().name(), t.result::<u8>().copied()))
        .collect();
    let want: Vec<(&str, Option<u8>)> = (1..=6).map(|i| ("Success", Some(i))).collect();
    assert_eq!(got, want);
}

// ---- retries, on tokio's paused clock ----

static ALWAYS_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 3, retry_delay = "2s")]
fn always_fails() -> Result<u8, TaskError> {
    ALWAYS_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(TaskError::fail("still broken"))
}

#[task(max_retries = 5, retry_delay = "1m30s")]
async fn flaky(ctx: &TaskContext) -> Result<u32, TaskError> {
    if ctx.attempt() < 2 {
        return Err(TaskError::fail(format!("attempt {} failed", ctx.attempt())));
    }
    Ok(ctx.attempt())
}

flow! {
    fn retried() -> u8 {
        always_fails()
    }

    fn flaky_flow() -> u32 {
        flaky()
    }
}

#[tokio::test(start_paused = true)]
async fn retries_make_max_retries_plus_one_attempts_then_fail() {
    let start = tokio::time::Instant::now();
    let run = retried().run().await;
    let t = run.task("always_fails");
    assert_eq!(t.attempts(), 4);
    assert_eq!(ALWAYS_CALLS.load(Ordering::SeqCst), 4);
    assert_eq!(
        t.state(),
        &State::Failed {
            message: "still broken".into()
        }
    );
    assert!(run.state().is_failed());
    // Three waits of 2 s between four attempts, on the paused clock.
    assert!(start.elapsed() >= Duration::from_secs(6), "{:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_flaky_task_succeeds_on_its_second_attempt() {
    let start = tokio::time::Instant::now();
    let run = flaky_flow().run().await;
    let t = run.task("flaky");
    assert_eq!(t.state(), &State::Success);
    assert_eq!(t.attempts(), 2);
    assert_eq!(run.output(), Ok(&2));
    assert!(start.elapsed() >= Duration::from_secs(90));
}

// ---- panics, skips, context, borrowing ----

#[task]
fn panics(x: i64) -> i64 {
    if x == 2 {
        panic!("no twos here");
    }
    x
}

#[task]
fn describe(x: &i64, ctx: &TaskContext) -> String {
    format!("{}={x} attempt {}", ctx.full_name(), ctx.attempt())
}

flow! {
    fn panicking() -> Vec<i64> {
        panics.map([1, 2, 3])
    }

    fn with_context() -> Vec<String> {
        let xs = numbers(2);
        let items = add1.map(xs);
        describe.map(items)
    }
}

#[tokio::test]
async fn a_panic_becomes_a_failed_state_and_the_flow_goes_on() {
    let run = panicking().executor(common::executor()).run().await;
    let mapped = run.task("panics");
    assert_eq!(states(mapped), vec!["Success", "Failed", "Success"]);
    let message = mapped.children()[1].state().message().unwrap_or_default();
    assert!(message.contains("no twos here"), "{message}");
    assert_eq!(results(mapped), vec![Some(1), None, Some(3)]);
    assert!(run.state().is_failed());
}

#[tokio::test]
async fn tasks_borrow_upstream_values_and_see_their_context() {
    let run = with_context().executor(common::executor()).run().await;
    assert_eq!(
        run.output(),
        Ok(&vec![
            "describe[0]=2 attempt 1".to_owned(),
            "describe[1]=3 attempt 1".to_owned()
        ])
    );
}

// ---- parameters ----

#[tokio::test]
async fn parameters_are_set_by_name_with_validation() {
    let run = map_in_order()
        .with_param("n", 2)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&vec![2, 3]));

    let unknown = map_in_order().with_param("count", 2).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "flow `map_in_order` has no parameter `count`; its parameters are: `n: i64`"
    );
    let wrong = map_in_order().with_param("n", "five").unwrap_err();
    assert!(
        wrong
            .to_string()
            .starts_with("parameter `n` of flow `map_in_order` expects a `i64`: invalid type: string"),
        "{wrong}"
    );
}

#[tokio::test]
async fn a_required_parameter_left_unset_fails_the_run_before_anything_runs() {
    let run = map_of_required().executor(common::executor()).run().await;
    let why =
        "parameter `n` of flow `map_of_required` is required and was not set: set it with `--param n=..` \
               (the CLI) or `.with_param(\"n\", ..)`";
    assert_eq!(
        run.state(),
        &State::Failed {
            message: why.to_owned()
        }
    );
    for task in run.tasks() {
        assert_eq!(task.attempts(), 0, "{} ran", task.name());
        assert_eq!(
            task.state(),
            &State::Failed {
                message: format!("never ran: {why}")
            }
        );
    }
    assert_eq!(map_of_required().params(), [("n", serde_json::Value::Null)]);

    let run = map_of_required()
        .with_param("n", 2)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&vec![2, 3]));
}

// ---- results are released when no consumer needs them ----

#[tokio::test]
async fn intermediate_results_are_released_unless_kept() {
    let run = map_reduce().executor(common::executor()).run().await;
    let first = &run.tasks()[0];
    assert!(first.children().iter().all(|c| c.result::<i64>().is_none()));
    assert_eq!(
        run.tasks()[2].result::<i64>(),
        Some(&12),
        "terminal results are kept"
    );

    let kept = map_reduce()
        .keep_results()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(results(&kept.tasks()[0]), vec![Some(2), Some(3), Some(4)]);
}

// ---- element-wise chained maps ----

static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[task]
async fn first_stage(x: i64) -> i64 {
    if x == 1 {
        // Child 1 of the first map waits until child 0 of the second map has run.
        GATE.notified().await;
    }
    x
}

#[task]
async fn second_stage(x: i64) -> i64 {
    if x == 0 {
        GATE.notify_one();
    }
    x * 10
}

flow! {
    fn element_wise() -> Vec<i64> {
        let a = first_stage.map([0, 1]);
        second_stage.map(a)
    }
}

#[tokio::test(start_paused = true)]
async fn chained_maps_run_element_wise() {
    // If the second map waited for the whole first map, this would never finish; the
    // paused clock turns that deadlock into a timeout.
    let run = tokio::time::timeout(Duration::from_secs(60), element_wise().run())
        .await
        .expect("second_stage[0] must start while first_stage[1] is still running");
    assert_eq!(run.output(), Ok(&vec![0, 10]));
}

// ---- per-flow task options ----

static OVERRIDDEN_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 5, retry_delay = "2s")]
fn slow_retries() -> Result<u8, TaskError> {
    OVERRIDDEN_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(TaskError::fail("down"))
}

flow! {
    fn overridden() -> u8 {
        slow_retries()
    }
}

#[tokio::test(start_paused = true)]
async fn task_options_can_be_overridden_per_flow() {
    let start = tokio::time::Instant::now();
    let flow = overridden()
        .with_task_options("slow_retries", |o| {
            o.max_retries = 2;
            o.retry_delay = Duration::from_millis(10);
        })
        .unwrap();
    let run = flow.run().await;
    assert_eq!(run.task("slow_retries").attempts(), 3);
    assert_eq!(OVERRIDDEN_CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(20));
    let err = overridden().with_task_options("nope", |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "flow `overridden` has no task `nope`; its tasks are: `slow_retries`"
    );
}

// ---- the graph is data ----

#[test]
fn the_graph_prints_before_running_with_mapped_tasks_marked() {
    let flow = broadcast();
    assert_eq!(
        flow.to_mermaid(),
        "flowchart TD
    p0[/\"k: i64\"/]
    c0>\"3\"]
    t0(\"xs = numbers\")
    t1[[\"add.map\"]]
    c0 -->|data| t0
    t0 -->|mapped| t1
    p0 -->|unmapped| t1
"
    );
    let dot = flow.to_dot();
    assert!(dot.starts_with("digraph \"broadcast\" {"), "{dot}");
    assert!(
        dot.contains("t1 [label=\"add.map\", shape=box3d, style=bold];"),
        "{dot}"
    );
    assert!(dot.contains("p0 -> t1 [label=\"unmapped\"];"), "{dot}");
    assert_eq!(flow.graph().nodes.len(), 2);
    assert!(flow.graph().nodes[1].mapped);
}

// ---- where sync tasks run ----

static FAST_THREADS: std::sync::Mutex<Vec<std::thread::ThreadId>> = std::sync::Mutex::new(Vec::new());
static SLOW_THREADS: std::sync::Mutex<Vec<std::thread::ThreadId>> = std::sync::Mutex::new(Vec::new());

#[task]
fn fast_step(x: u64) -> u64 {
    FAST_THREADS.lock().unwrap().push(std::thread::current().id());
    x + 1
}

#[task]
fn slow_step(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    SLOW_THREADS.lock().unwrap().push(std::thread::current().id());
    x + 1
}

flow! {
    fn fast_chain() -> u64 {
        let a = fast_step(0);
        let b = fast_step(a);
        let c = fast_step(b);
        let d = fast_step(c);
        fast_step(d)
    }

    fn slow_chain() -> u64 {
        let a = slow_step(0);
        let b = slow_step(a);
        let c = slow_step(b);
        slow_step(c)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sync_tasks_run_on_the_pool_until_seen_to_take_microseconds() {
    let here = std::thread::current().id();
    // A generous limit, so the test does not depend on how fast this machine is.
    let local = LocalExecutor::new().inline_sync_under(Duration::from_secs(1));
    assert_eq!(fast_chain().executor(local).run().await.output(), Ok(&5));
    let fast = FAST_THREADS.lock().unwrap().clone();
    // The first two runs go to the compute pool; once the task has shown it is quick,
    // the scheduler runs it inline while the pool is idle.
    assert_eq!(fast.len(), 5);
    assert!(fast[..2].iter().all(|t| *t != here), "{fast:?}");
    assert!(fast[2..].iter().all(|t| *t == here), "{fast:?}");

    // 2 ms runs are never under the default limit of 5 µs.
    assert_eq!(slow_chain().run().await.output(), Ok(&4));
    let slow = SLOW_THREADS.lock().unwrap().clone();
    assert_eq!(slow.len(), 4);
    assert!(
        slow.iter().all(|t| *t != here),
        "a slow sync task always runs off the async thread"
    );

    FAST_THREADS.lock().unwrap().clear();
    let pool_only = LocalExecutor::new().inline_sync_under(Duration::ZERO);
    assert_eq!(fast_chain().executor(pool_only).run().await.output(), Ok(&5));
    assert!(FAST_THREADS.lock().unwrap().iter().all(|t| *t != here));
}
