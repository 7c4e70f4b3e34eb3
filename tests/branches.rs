//! `if` in a flow: the branch that is not taken ends `Skipped` as a whole, skips
//! propagate downstream, and an `if` that gives a value gives the value of the branch
//! that ran (through its merge).
//!
//! Every flow runs on the executor `TIDEFLOW_TEST_EXECUTOR` names: the local one by
//! default, a local Dask cluster with `dask-local:2` (`.ci/run` runs them both ways).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use tideflow::prelude::*;

/// What each Dask worker runs when the tests use a Dask cluster.
#[test]
fn tideflow_worker() {
    tideflow::worker::serve_if_worker();
}

/// The attempts of each of `tasks`, from the run record.
fn attempts<O: Send + Sync + 'static>(run: &FlowRun<O>, tasks: &[&str]) -> Vec<u32> {
    tasks.iter().map(|t| run.task(t).attempts()).collect()
}

/// How many times a task body ran, per task.
struct Calls(AtomicUsize);

impl Calls {
    const fn new() -> Self {
        Calls(AtomicUsize::new(0))
    }

    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// Calls so far, and reset (each test flow runs its own tasks, one run at a time).
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }
}

fn skipped_because<O: Send + Sync + 'static>(run: &FlowRun<O>, task: &str) -> String {
    match run.task(task).state() {
        State::Skipped { message } => message.clone(),
        other => panic!("`{task}` ended {other}, not Skipped\n{}", run.summary()),
    }
}

// ---------------------------------------------------------------------------------------
// Statement form: the branch that is not taken is skipped, task by task.

static LOUD_CALLS: Calls = Calls::new();
static ECHO_CALLS: Calls = Calls::new();
static QUIET_CALLS: Calls = Calls::new();

#[task]
fn loud(x: u64) -> u64 {
    LOUD_CALLS.hit();
    x * 10
}

#[task]
fn echo(x: u64) -> u64 {
    ECHO_CALLS.hit();
    x + 1
}

#[task]
fn quiet(x: u64) -> u64 {
    QUIET_CALLS.hit();
    x
}

flow! {
    fn volume(x: u64 = 4, flag: bool = true) {
        if flag {
            let a = loud(x);
            let b = echo(a);
        } else {
            let q = quiet(x);
        }
    }
}

#[tokio::test]
async fn the_taken_branch_runs_and_every_task_of_the_other_is_skipped() {
    let run = volume().executor(common::executor()).run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert!(run.task("if flag").state().is_success());
    assert!(run.task("a").state().is_success());
    assert_eq!(run.task("b").result::<u64>(), Some(&41));
    assert_eq!(skipped_because(&run, "else flag"), "condition `flag` was true");
    assert_eq!(skipped_because(&run, "q"), "upstream `else flag` was skipped");
    assert_eq!(run.task("q").attempts(), 0);
    assert_eq!(attempts(&run, &["a", "b", "q"]), [1, 1, 0]);
    common::assert_calls(
        (LOUD_CALLS.take(), ECHO_CALLS.take(), QUIET_CALLS.take()),
        (1, 1, 0),
    );

    let run = volume()
        .with_param("flag", false)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(skipped_because(&run, "if flag"), "condition `flag` was false");
    assert_eq!(skipped_because(&run, "a"), "upstream `if flag` was skipped");
    // Downstream of a skipped task in the branch: skipped too.
    assert_eq!(skipped_because(&run, "b"), "upstream `a` was skipped");
    assert!(run.task("else flag").state().is_success());
    assert_eq!(run.task("q").result::<u64>(), Some(&4));
    assert_eq!(attempts(&run, &["a", "b", "q"]), [0, 0, 1]);
    common::assert_calls(
        (LOUD_CALLS.take(), ECHO_CALLS.take(), QUIET_CALLS.take()),
        (0, 0, 1),
    );
}

// ---------------------------------------------------------------------------------------
// Value form: the merge gives the value of the branch that ran.

static DOUBLE_CALLS: Calls = Calls::new();
static NEGATE_CALLS: Calls = Calls::new();
static REPORT_CALLS: Calls = Calls::new();

#[task]
fn double(x: i64) -> i64 {
    DOUBLE_CALLS.hit();
    x * 2
}

#[task]
fn negate(x: i64) -> i64 {
    NEGATE_CALLS.hit();
    -x
}

#[task]
fn report(y: i64) -> String {
    REPORT_CALLS.hit();
    format!("y = {y}")
}

flow! {
    fn pick(x: i64 = 5, up: bool = true) -> String {
        let y = if up { double(x) } else { negate(x) };
        report(y)
    }
}

#[tokio::test]
async fn the_merge_gives_the_value_of_the_branch_that_ran() {
    let run = pick().executor(common::executor()).run().await;
    assert_eq!(run.output(), Ok(&"y = 10".to_owned()), "{}", run.summary());
    assert!(run.task("y").state().is_success());
    assert!(run.task("double").state().is_success());
    assert_eq!(skipped_because(&run, "negate"), "upstream `else up` was skipped");
    assert_eq!(attempts(&run, &["double", "negate", "report"]), [1, 0, 1]);
    common::assert_calls(
        (DOUBLE_CALLS.take(), NEGATE_CALLS.take(), REPORT_CALLS.take()),
        (1, 0, 1),
    );

    let run = pick()
        .with_param("up", false)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&"y = -5".to_owned()), "{}", run.summary());
    assert!(run.task("y").state().is_success());
    assert_eq!(skipped_because(&run, "double"), "upstream `if up` was skipped");
    assert!(run.task("negate").state().is_success());
    assert_eq!(attempts(&run, &["double", "negate", "report"]), [0, 1, 1]);
    common::assert_calls(
        (DOUBLE_CALLS.take(), NEGATE_CALLS.take(), REPORT_CALLS.take()),
        (0, 1, 1),
    );
}

// The condition is a task's `bool` result, called in the condition itself.

static BIG_CALLS: Calls = Calls::new();
static SHRINK_CALLS: Calls = Calls::new();
static GROW_CALLS: Calls = Calls::new();

#[task]
fn is_big(n: u64) -> bool {
    BIG_CALLS.hit();
    n > 100
}

#[task]
fn shrink(n: u64) -> u64 {
    SHRINK_CALLS.hit();
    n / 10
}

#[task]
fn grow(n: u64) -> u64 {
    GROW_CALLS.hit();
    n * 10
}

flow! {
    fn normalize(n: u64 = 500) -> u64 {
        if is_big(n) { shrink(n) } else { grow(n) }
    }
}

#[tokio::test]
async fn a_task_s_bool_result_decides_the_branch_and_the_final_if_is_the_output() {
    let run = normalize().executor(common::executor()).run().await;
    assert_eq!(run.output(), Ok(&50), "{}", run.summary());
    assert_eq!(
        run.task("is_big").result::<bool>(),
        None,
        "read by the gates, not kept"
    );
    assert!(run.task("if is_big(n)").state().is_success());
    assert_eq!(
        skipped_because(&run, "else is_big(n)"),
        "condition `is_big(n)` was true"
    );
    assert_eq!(
        skipped_because(&run, "grow"),
        "upstream `else is_big(n)` was skipped"
    );
    assert!(run.task("merge is_big(n)").state().is_success());
    assert_eq!(attempts(&run, &["is_big", "shrink", "grow"]), [1, 1, 0]);
    common::assert_calls(
        (BIG_CALLS.take(), SHRINK_CALLS.take(), GROW_CALLS.take()),
        (1, 1, 0),
    );

    let run = normalize()
        .with_param("n", 7)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&70), "{}", run.summary());
    assert_eq!(
        skipped_because(&run, "shrink"),
        "upstream `if is_big(n)` was skipped"
    );
    assert_eq!(attempts(&run, &["is_big", "shrink", "grow"]), [1, 0, 1]);
    common::assert_calls(
        (BIG_CALLS.take(), SHRINK_CALLS.take(), GROW_CALLS.take()),
        (1, 0, 1),
    );
}

// ---------------------------------------------------------------------------------------
// A failure in the branch that ran fails the merge.

static AFTER_FAIL_CALLS: Calls = Calls::new();

#[task]
fn flaky(x: u64) -> Result<u64, TaskError> {
    Err(TaskError::fail(format!("cannot handle {x}")))
}

#[task]
fn steady(x: u64) -> u64 {
    x
}

#[task]
fn after_fail(x: u64) -> u64 {
    AFTER_FAIL_CALLS.hit();
    x
}

flow! {
    fn failing_branch(x: u64 = 3, risky: bool = true) -> u64 {
        let y = if risky { flaky(x) } else { steady(x) };
        after_fail(y)
    }
}

#[tokio::test]
async fn a_failed_task_in_the_branch_that_ran_fails_the_merge_and_the_flow() {
    let run = failing_branch().executor(common::executor()).run().await;
    assert!(run.state().is_failed(), "{}", run.summary());
    assert!(matches!(
        run.task("flaky").state(),
        State::Failed { message } if message == "cannot handle 3"
    ));
    assert_eq!(
        skipped_because(&run, "steady"),
        "upstream `else risky` was skipped"
    );
    let merge = run.task("y").state();
    assert!(merge.is_trigger_failed(), "{merge}");
    assert!(
        merge.message() == Some("the branch of the `if` that ran gave no value: `flaky` ended Failed"),
        "{merge}"
    );
    assert!(run.task("after_fail").state().is_trigger_failed());
    assert_eq!(attempts(&run, &["flaky", "steady", "after_fail"]), [1, 0, 0]);
    common::assert_calls(AFTER_FAIL_CALLS.take(), 0);
    assert!(run.output().is_err());

    let run = failing_branch()
        .with_param("risky", false)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&3), "{}", run.summary());
    assert_eq!(attempts(&run, &["flaky", "steady", "after_fail"]), [0, 1, 1]);
    common::assert_calls(AFTER_FAIL_CALLS.take(), 1);
}

// ---------------------------------------------------------------------------------------
// A skipped condition skips both branches and the merge.

static EITHER_CALLS: Calls = Calls::new();
static DOWNSTREAM_CALLS: Calls = Calls::new();

#[task]
fn decide(x: u64) -> Result<bool, TaskError> {
    if x == 0 {
        return Err(TaskError::skip("nothing to decide"));
    }
    Ok(x.is_multiple_of(2))
}

#[task]
fn either(x: u64) -> u64 {
    EITHER_CALLS.hit();
    x
}

#[task]
fn downstream(x: u64) -> u64 {
    DOWNSTREAM_CALLS.hit();
    x
}

flow! {
    fn undecided(x: u64 = 0) -> u64 {
        let even = decide(x);
        let y = if even { either(x) } else { either(x) };
        downstream(y)
    }
}

#[tokio::test]
async fn a_skipped_condition_skips_both_branches_the_merge_and_what_follows() {
    let run = undecided().executor(common::executor()).run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(skipped_because(&run, "even"), "nothing to decide");
    assert_eq!(skipped_because(&run, "if even"), "upstream `even` was skipped");
    assert_eq!(skipped_because(&run, "else even"), "upstream `even` was skipped");
    assert_eq!(skipped_because(&run, "either"), "upstream `if even` was skipped");
    assert_eq!(
        skipped_because(&run, "either-2"),
        "upstream `else even` was skipped"
    );
    assert_eq!(
        skipped_because(&run, "y"),
        "no branch of the `if` ran: `if even` ended Skipped"
    );
    assert_eq!(skipped_because(&run, "downstream"), "upstream `y` was skipped");
    assert_eq!(attempts(&run, &["either", "either-2", "downstream"]), [0, 0, 0]);
    common::assert_calls((EITHER_CALLS.take(), DOWNSTREAM_CALLS.take()), (0, 0));
    assert!(run.output().is_err());

    let run = undecided()
        .with_param("x", 4)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&4), "{}", run.summary());
    assert!(run.task("either").state().is_success());
    assert!(run.task("either-2").state().is_skipped());
    assert_eq!(attempts(&run, &["either", "either-2", "downstream"]), [1, 0, 1]);
    common::assert_calls((EITHER_CALLS.take(), DOWNSTREAM_CALLS.take()), (1, 1));
}

// ---------------------------------------------------------------------------------------
// `else if` chains: the first branch whose condition holds runs.

#[task]
fn label(code: u32) -> String {
    match code {
        1 => "small".to_owned(),
        2 => "medium".to_owned(),
        _ => "large".to_owned(),
    }
}

#[task]
fn is_small(n: u64) -> bool {
    n < 10
}

#[task]
fn is_medium(n: u64) -> bool {
    n < 100
}

flow! {
    fn size(n: u64 = 5) -> String {
        let small = is_small(n);
        if small {
            label(1)
        } else if is_medium(n) {
            label(2)
        } else {
            label(3)
        }
    }
}

#[tokio::test]
async fn an_else_if_chain_runs_the_first_branch_whose_condition_holds() {
    let run = size().executor(common::executor()).run().await;
    assert_eq!(run.output(), Ok(&"small".to_owned()), "{}", run.summary());
    // The second condition is in the `else` branch: it is not even computed.
    assert_eq!(
        skipped_because(&run, "is_medium"),
        "upstream `else small` was skipped"
    );
    assert_eq!(
        skipped_because(&run, "if is_medium(n)"),
        "upstream `is_medium` was skipped"
    );
    assert_eq!(
        skipped_because(&run, "label-2"),
        "upstream `if is_medium(n)` was skipped"
    );
    assert_eq!(
        skipped_because(&run, "label-3"),
        "upstream `else is_medium(n)` was skipped"
    );

    let run = size()
        .with_param("n", 50)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&"medium".to_owned()), "{}", run.summary());
    assert!(run.task("label").state().is_skipped());
    assert!(run.task("label-2").state().is_success());
    assert_eq!(
        skipped_because(&run, "else is_medium(n)"),
        "condition `is_medium(n)` was true"
    );
    assert!(run.task("label-3").state().is_skipped());

    let run = size()
        .with_param("n", 500)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&"large".to_owned()), "{}", run.summary());
    assert!(run.task("label").state().is_skipped());
    assert!(run.task("label-2").state().is_skipped());
    assert!(run.task("label-3").state().is_success());
    // One merge for the whole chain.
    assert!(run.task("merge small").state().is_success());
}

// ---------------------------------------------------------------------------------------
// A branch holding a `.map(..)`.

static SQUARE_CALLS: Calls = Calls::new();

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[task]
fn square(x: u64) -> u64 {
    SQUARE_CALLS.hit();
    x * x
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
fn count(xs: Vec<u64>) -> u64 {
    xs.len() as u64
}

flow! {
    fn squares_or_count(n: u64 = 3, squares: bool = true) -> u64 {
        let xs = numbers(n);
        if squares {
            let sq = square.map(xs);
            total(sq)
        } else {
            count(xs)
        }
    }
}

#[tokio::test]
async fn a_branch_with_a_map_runs_or_skips_the_whole_map() {
    let run = squares_or_count().executor(common::executor()).run().await;
    assert_eq!(run.output(), Ok(&14), "{}", run.summary());
    assert_eq!(run.task("sq").children().len(), 3);
    assert!(run.task("count").state().is_skipped());
    let sq: Vec<u32> = run.task("sq").children().iter().map(|c| c.attempts()).collect();
    assert_eq!(sq, [1, 1, 1]);
    assert_eq!(attempts(&run, &["xs", "total", "count"]), [1, 1, 0]);
    common::assert_calls(SQUARE_CALLS.take(), 3);

    let run = squares_or_count()
        .with_param("squares", false)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&3), "{}", run.summary());
    assert_eq!(skipped_because(&run, "sq"), "upstream `if squares` was skipped");
    assert!(run.task("sq").children().is_empty());
    assert_eq!(skipped_because(&run, "total"), "upstream `sq` was skipped");
    assert_eq!(attempts(&run, &["xs", "sq", "total", "count"]), [1, 0, 0, 1]);
    common::assert_calls(SQUARE_CALLS.take(), 0);
}

// ---------------------------------------------------------------------------------------
// Without `else`, negated, nested.

static NOTIFY_CALLS: Calls = Calls::new();
static INNER_CALLS: Calls = Calls::new();

#[task]
fn notify(x: u64) {
    let _ = x;
    NOTIFY_CALLS.hit();
}

#[task]
fn inner(x: u64) -> u64 {
    INNER_CALLS.hit();
    x
}

flow! {
    fn maybe_notify(x: u64 = 1, quiet: bool = false, deep: bool = true) {
        if !quiet {
            notify(x);
            if deep {
                inner(x);
            }
        }
    }
}

#[tokio::test]
async fn an_if_without_else_runs_its_branch_or_skips_it() {
    let run = maybe_notify().executor(common::executor()).run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert!(run.task("if !quiet").state().is_success());
    assert!(run.task("notify").state().is_success());
    assert!(run.task("inner").state().is_success());
    assert_eq!(attempts(&run, &["notify", "inner"]), [1, 1]);
    common::assert_calls((NOTIFY_CALLS.take(), INNER_CALLS.take()), (1, 1));

    let run = maybe_notify()
        .with_param("quiet", true)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(skipped_because(&run, "if !quiet"), "condition `quiet` was true");
    assert_eq!(
        skipped_because(&run, "notify"),
        "upstream `if !quiet` was skipped"
    );
    // A nested `if` in a skipped branch is skipped, its own condition aside.
    assert_eq!(
        skipped_because(&run, "if deep"),
        "upstream `if !quiet` was skipped"
    );
    assert_eq!(skipped_because(&run, "inner"), "upstream `if deep` was skipped");
    assert_eq!(attempts(&run, &["notify", "inner"]), [0, 0]);
    common::assert_calls((NOTIFY_CALLS.take(), INNER_CALLS.take()), (0, 0));

    let run = maybe_notify()
        .with_param("deep", false)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert!(run.task("notify").state().is_success());
    assert_eq!(skipped_because(&run, "inner"), "upstream `if deep` was skipped");
    assert_eq!(attempts(&run, &["notify", "inner"]), [1, 0]);
    common::assert_calls((NOTIFY_CALLS.take(), INNER_CALLS.take()), (1, 0));
}

// ---------------------------------------------------------------------------------------
// Graph printing.

#[test]
fn gates_print_as_decisions_and_the_merge_reads_every_branch() {
    let expected = r#"digraph "pick" {
    node [fontname="Helvetica"];
    edge [fontname="Helvetica", fontsize=10];
    p0 [label="x: i64", shape=parallelogram];
    p1 [label="up: bool", shape=parallelogram];
    t0 [label="if up", shape=diamond];
    t1 [label="double", shape=box, style=rounded];
    t2 [label="else up", shape=diamond];
    t3 [label="negate", shape=box, style=rounded];
    t4 [label="y = merge", shape=oval];
    t5 [label="report", shape=box, style=rounded];
    p1 -> t0 [label="condition"];
    p0 -> t1 [label="data"];
    t0 -> t1 [label="after", style=dashed];
    p1 -> t2 [label="condition"];
    p0 -> t3 [label="data"];
    t2 -> t3 [label="after", style=dashed];
    t0 -> t4 [label="branch", style=dashed];
    t1 -> t4 [label="data"];
    t2 -> t4 [label="branch", style=dashed];
    t3 -> t4 [label="data"];
    t4 -> t5 [label="data"];
}
"#;
    assert_eq!(pick().to_dot(), expected);
    let mermaid = pick().to_mermaid();
    assert!(mermaid.contains("    t0{\"if up\"}\n"), "{mermaid}");
    assert!(mermaid.contains("    t4([\"y = merge\"])\n"), "{mermaid}");
    assert!(mermaid.contains("    t0 -.->|branch| t4\n"), "{mermaid}");
}

// ---------------------------------------------------------------------------------------
// Parameters and constants as branch values.

#[task]
fn times(x: u64, k: u64) -> u64 {
    x * k
}

flow! {
    fn constants(x: u64 = 3, triple: bool = true, keep: bool = false) -> u64 {
        let k = if triple { 3 } else { 1 };
        let y = times(x, k);
        if keep { x } else { y }
    }
}

#[tokio::test]
async fn parameters_and_constants_are_branch_values() {
    let run = constants().executor(common::executor()).run().await;
    assert_eq!(run.output(), Ok(&9), "{}", run.summary());
    let run = constants()
        .with_param("triple", false)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&3), "{}", run.summary());
    let run = constants()
        .with_param("x", 5)
        .unwrap()
        .with_param("keep", true)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&5), "{}", run.summary());
    assert!(run.task("y").state().is_success());
    assert!(run.task("merge keep").state().is_success());
}

// ---------------------------------------------------------------------------------------
// Nested `if`s that give values, and a skip inside the branch that ran.

#[task]
fn tag(code: u32) -> u32 {
    code
}

#[task]
fn maybe(code: u32) -> Result<u32, TaskError> {
    if code == 0 {
        return Err(TaskError::skip("no code"));
    }
    Ok(code)
}

flow! {
    fn nested(a: bool = true, b: bool = true, code: u32 = 7) -> u32 {
        if a {
            if b { tag(1) } else { maybe(code) }
        } else {
            tag(3)
        }
    }
}

#[tokio::test]
async fn nested_ifs_give_the_value_of_the_innermost_branch_that_ran() {
    let run = nested().executor(common::executor()).run().await;
    assert_eq!(run.output(), Ok(&1), "{}", run.summary());
    assert!(run.task("merge b").state().is_success());

    let run = nested()
        .with_param("b", false)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&7), "{}", run.summary());

    let run = nested()
        .with_param("a", false)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.output(), Ok(&3), "{}", run.summary());
    // The inner `if` is in the branch that did not run: its gates, its tasks and its merge
    // are skipped.
    assert_eq!(skipped_because(&run, "if b"), "upstream `if a` was skipped");
    assert_eq!(skipped_because(&run, "else b"), "upstream `if a` was skipped");
    assert_eq!(skipped_because(&run, "maybe"), "upstream `else b` was skipped");
    assert_eq!(
        skipped_because(&run, "merge b"),
        "no branch of the `if` ran: `if b` ended Skipped"
    );
    assert!(run.task("merge a").state().is_success());
}

#[tokio::test]
async fn a_skip_signalled_in_the_branch_that_ran_skips_the_merge() {
    let run = nested()
        .with_param("b", false)
        .unwrap()
        .with_param("code", 0)
        .unwrap()
        .executor(common::executor())
        .run()
        .await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert!(run.task("else b").state().is_success());
    assert_eq!(skipped_because(&run, "maybe"), "no code");
    assert_eq!(
        skipped_because(&run, "merge b"),
        "no branch of the `if` gave a value: `maybe` ended Skipped"
    );
    assert_eq!(
        skipped_because(&run, "merge a"),
        "no branch of the `if` gave a value: `merge b` ended Skipped"
    );
    assert!(run.output().is_err());
}

// ---------------------------------------------------------------------------------------
// A failed condition: neither branch runs, and the failure reaches the merge.

#[task]
fn broken_check(x: u64) -> Result<bool, TaskError> {
    Err(TaskError::fail(format!("cannot check {x}")))
}

flow! {
    fn broken(x: u64 = 1) -> u64 {
        if broken_check(x) { steady(x) } else { steady(x) }
    }
}

#[tokio::test]
async fn a_failed_condition_fails_both_gates_and_the_merge() {
    let run = broken().executor(common::executor()).run().await;
    assert!(run.state().is_failed(), "{}", run.summary());
    assert!(run.task("broken_check").state().is_failed());
    for task in ["if broken_check(x)", "else broken_check(x)", "steady", "steady-2"] {
        assert!(
            run.task(task).state().is_trigger_failed(),
            "{task}: {}",
            run.summary()
        );
    }
    assert_eq!(
        run.task("merge broken_check(x)").state().message(),
        Some("no branch of the `if` ran: `if broken_check(x)` ended TriggerFailed")
    );
}

// ---------------------------------------------------------------------------------------
// A task of the branch not taken is skipped even when it runs after failures or skips.

static ALWAYS_CALLS: Calls = Calls::new();

#[task(trigger = all_finished, skip_on_upstream_skip = false)]
fn cleanup(x: u64) -> u64 {
    ALWAYS_CALLS.hit();
    x
}

flow! {
    fn tidy(x: u64 = 1, flag: bool = false) {
        if flag {
            cleanup(x);
        }
    }
}

#[tokio::test]
async fn a_task_of_the_branch_not_taken_is_skipped_whatever_its_trigger() {
    let run = tidy().executor(common::executor()).run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(skipped_because(&run, "if flag"), "condition `flag` was false");
    assert_eq!(skipped_because(&run, "cleanup"), "upstream `if flag` was skipped");
    assert_eq!(run.task("cleanup").attempts(), 0);
    common::assert_calls(ALWAYS_CALLS.take(), 0);

    let run = tidy()
        .with_param("flag", true)
        .expect("flag")
        .executor(common::executor())
        .run()
        .await;
    assert_eq!(run.task("cleanup").state(), &State::Success);
    assert_eq!(run.task("cleanup").attempts(), 1);
    common::assert_calls(ALWAYS_CALLS.take(), 1);
}
