//! Engine tests on hand-built graphs: exact states, attempts, results and messages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::context::TaskContext;
use crate::error::TaskError;
use crate::executor::{LocalExecutor, SequentialExecutor};
use crate::flow::Flow;
use crate::graph::{Graph, Input, Node, NodeId, NodeKind, ParamSpec, Source};
use crate::run::{FlowRun, TaskRun};
use crate::state::State;
use crate::task::{TaskBody, TaskDef, TaskOptions, TaskParam, Trigger};
use crate::value::{self, borrow, take, value, Value};

// ---------------------------------------------------------------- building graphs

macro_rules! def {
    ($name:literal, [$($p:literal),*], $body:expr) => {
        def!($name, [$($p),*], TaskOptions::DEFAULT, $body)
    };
    ($name:literal, [$($p:literal),*], $options:expr, $body:expr) => {
        TaskDef {
            name: $name,
            key: concat!("engine::tests::", $name),
            options: $options,
            params: &[$(TaskParam { name: $p, ty: "u64" }),*],
            output: "u64",
            body: $body,
            codec: None,
        }
    };
}

fn n(i: u32) -> NodeId {
    NodeId(i)
}

fn task(name: &str, def: &'static TaskDef, inputs: Vec<Input>) -> Node {
    Node {
        name: name.to_owned(),
        task: def,
        options: def.options,
        mapped: false,
        inputs,
        after: Vec::new(),
        kind: NodeKind::Call,
    }
}

fn map(name: &str, def: &'static TaskDef, inputs: Vec<Input>) -> Node {
    Node {
        mapped: true,
        ..task(name, def, inputs)
    }
}

fn after(mut node: Node, deps: &[u32]) -> Node {
    node.after = deps.iter().map(|&d| n(d)).collect();
    node
}

fn graph(nodes: Vec<Node>, output: Option<Source>) -> Graph {
    Graph {
        name: "test",
        description: "",
        nodes,
        params: Vec::new(),
        output,
    }
}

fn flow<O: Send + Sync + 'static>(nodes: Vec<Node>, output: Option<Source>) -> Flow<O> {
    Flow::from_graph(graph(nodes, output))
}

/// The result of node `i`, whole.
fn val(i: u32) -> Input {
    Input::Value(Source::Node(n(i)))
}

/// One child per element of node `i`'s `Vec<u64>`.
fn fan(i: u32) -> Input {
    Input::FanOut(Source::Node(n(i)), split_u64)
}

/// One child per child of mapped node `i`.
fn zip(i: u32) -> Input {
    Input::Zip(n(i))
}

/// Every child result of mapped node `i`, as a `Vec<u64>`.
fn reduce(i: u32) -> Input {
    Input::Value(reduce_src(i))
}

fn reduce_src(i: u32) -> Source {
    Source::Reduce(n(i), collect_u64)
}

fn konst(v: u64) -> Input {
    Input::Value(Source::Const(value(v), "v"))
}

fn list(v: Vec<u64>) -> Input {
    Input::FanOut(Source::Const(value(v), "[..]"), split_u64)
}

fn split_u64(v: Value) -> Vec<Value> {
    take::<Vec<u64>>(v)
        .map(|v| v.into_iter().map(value).collect())
        .unwrap_or_default()
}

fn collect_u64(parts: Vec<Value>) -> Value {
    value(
        parts
            .into_iter()
            .filter_map(|p| take::<u64>(p).ok())
            .collect::<Vec<u64>>(),
    )
}

fn collect_pair(parts: Vec<Value>) -> Value {
    let mut it = parts.into_iter().map(take::<u64>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => value((a, b)),
        _ => value(()),
    }
}

fn arg(inputs: &[Value], i: usize) -> Result<u64, TaskError> {
    let v = inputs.get(i).ok_or_else(|| TaskError::fail("missing input"))?;
    borrow::<u64>(v).copied()
}

fn states(t: &TaskRun) -> Vec<&'static str> {
    t.children().iter().map(|c| c.state().name()).collect()
}

fn results(t: &TaskRun) -> Vec<Option<u64>> {
    t.children().iter().map(|c| c.result::<u64>().copied()).collect()
}

fn message(state: &State) -> &str {
    state.message().unwrap_or_default()
}

const fn retrying(max_retries: u32, delay: Duration) -> TaskOptions {
    TaskOptions {
        max_retries,
        retry_delay: delay,
        ..TaskOptions::DEFAULT
    }
}

const fn triggered(trigger: Trigger) -> TaskOptions {
    TaskOptions {
        trigger,
        ..TaskOptions::DEFAULT
    }
}

// ---------------------------------------------------------------- tasks

fn one_two_three(_: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    Ok(value(vec![1u64, 2, 3]))
}

fn double(inputs: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    Ok(value(arg(&inputs, 0)? * 2))
}

fn add(inputs: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    Ok(value(arg(&inputs, 0)? + arg(&inputs, 1)?))
}

fn sum(inputs: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    let v = inputs
        .into_iter()
        .next()
        .ok_or_else(|| TaskError::fail("no input"))?;
    Ok(value(take::<Vec<u64>>(v)?.iter().sum::<u64>()))
}

fn fail_on_two(inputs: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    match arg(&inputs, 0)? {
        2 => Err(TaskError::fail("two is not allowed")),
        x => Ok(value(x)),
    }
}

fn skip_on_two(inputs: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    match arg(&inputs, 0)? {
        2 => Err(TaskError::skip("two is skipped")),
        x => Ok(value(x)),
    }
}

fn fails(_: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    Err(TaskError::fail("boom"))
}

fn skips(_: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    Err(TaskError::skip("nothing to do"))
}

fn seven(_: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
    Ok(value(7u64))
}

static LIST: TaskDef = def!("list", [], TaskBody::Sync(one_two_three));
static EMPTY: TaskDef = def!("empty", [], TaskBody::Sync(|_, _| Ok(value(Vec::<u64>::new()))));
static DOUBLE: TaskDef = def!("double", ["x"], TaskBody::Sync(double));
static ADD: TaskDef = def!("add", ["x", "y"], TaskBody::Sync(add));
static SUM: TaskDef = def!("sum", ["xs"], TaskBody::Sync(sum));
static FAIL_ON_TWO: TaskDef = def!("fail_on_two", ["x"], TaskBody::Sync(fail_on_two));
static SKIP_ON_TWO: TaskDef = def!("skip_on_two", ["x"], TaskBody::Sync(skip_on_two));
static FAILS: TaskDef = def!("fails", [], TaskBody::Sync(fails));
static FAILS_LIST: TaskDef = def!("fails_list", [], TaskBody::Sync(fails));
static SKIPS: TaskDef = def!("skips", [], TaskBody::Sync(skips));
static SEVEN: TaskDef = def!("seven", [], TaskBody::Sync(seven));
static ASYNC_DOUBLE: TaskDef = def!(
    "async_double",
    ["x"],
    TaskBody::Async(|inputs, _| Box::pin(async move {
        tokio::task::yield_now().await;
        Ok(value(arg(&inputs, 0)? * 2))
    }))
);

async fn both<O: Send + Sync + 'static>(f: &Flow<O>, check: impl Fn(&FlowRun<O>)) {
    check(&f.clone().executor(LocalExecutor::new()).run().await);
    check(&f.clone().executor(SequentialExecutor).run().await);
}

// ---------------------------------------------------------------- maps

#[tokio::test]
async fn map_runs_one_child_per_element_in_order() {
    let f = flow::<Vec<u64>>(
        vec![
            task("xs", &LIST, vec![]),
            map("doubled", &DOUBLE, vec![fan(0)]),
            map("async_doubled", &ASYNC_DOUBLE, vec![zip(1)]),
        ],
        Some(reduce_src(2)),
    );
    both(&f, |run| {
        assert!(run.state().is_success(), "{}", run.summary());
        assert_eq!(run.output(), Ok(&vec![4, 8, 12]));
        let doubled = run.task("doubled");
        assert_eq!(doubled.state(), &State::Mapped { children: 3 });
        assert_eq!(doubled.task_name(), "double");
        assert_eq!(doubled.attempts(), 0);
        let idx: Vec<_> = doubled
            .children()
            .iter()
            .map(crate::run::ChildRun::map_index)
            .collect();
        assert_eq!(idx, vec![0, 1, 2]);
        assert_eq!(doubled.child_name(2), "doubled[2]");
        assert_eq!(states(doubled), vec!["Success"; 3]);
        assert!(doubled.children().iter().all(|c| c.attempts() == 1));
        assert!(doubled.children().iter().all(|c| c.started_at().is_some()));
        assert!(doubled.children().iter().all(|c| c.duration().is_some()));
        assert_eq!(
            results(run.task("async_doubled")),
            vec![Some(4), Some(8), Some(12)]
        );
    })
    .await;
}

#[tokio::test]
async fn zip_pairs_children_by_index() {
    let f = flow::<Vec<u64>>(
        vec![
            map("a", &DOUBLE, vec![list(vec![1, 2, 3])]),
            map("b", &DOUBLE, vec![list(vec![10, 20, 30])]),
            map("sum", &ADD, vec![zip(0), zip(1)]),
        ],
        Some(reduce_src(2)),
    );
    both(&f, |run| assert_eq!(run.output(), Ok(&vec![22, 44, 66]))).await;
}

#[tokio::test]
async fn zip_mixes_fan_out_and_mapped_inputs() {
    let f = flow::<Vec<u64>>(
        vec![
            task("xs", &LIST, vec![]),
            map("a", &DOUBLE, vec![fan(0)]),
            map("sum", &ADD, vec![zip(1), fan(0)]),
        ],
        Some(reduce_src(2)),
    );
    both(&f, |run| assert_eq!(run.output(), Ok(&vec![3, 6, 9]))).await;
}

#[tokio::test]
async fn unmapped_inputs_are_broadcast_to_every_child() {
    let f = flow::<Vec<u64>>(
        vec![
            task("seven", &SEVEN, vec![]),
            map("plus_seven", &ADD, vec![list(vec![1, 2, 3]), val(0)]),
            map("plus_100", &ADD, vec![zip(1), konst(100)]),
        ],
        Some(reduce_src(2)),
    );
    both(&f, |run| {
        assert_eq!(results(run.task("plus_seven")), vec![None; 3], "released");
        assert_eq!(run.output(), Ok(&vec![108, 109, 110]));
    })
    .await;
}

#[tokio::test]
async fn zip_of_unequal_lengths_fails_naming_each_input() {
    static PAIR: TaskDef = def!("pair", ["a", "b"], TaskBody::Sync(add));
    let f = flow::<()>(
        vec![
            map("xs", &DOUBLE, vec![list(vec![1, 2, 3])]),
            map("pair", &PAIR, vec![zip(0), list(vec![1, 2])]),
            map("after_pair", &DOUBLE, vec![zip(1)]),
        ],
        None,
    );
    let run = f.run().await;
    assert!(run.state().is_failed());
    let pair = run.task("pair");
    assert_eq!(
        pair.state(),
        &State::Failed {
            message: "cannot zip mapped inputs of unequal lengths: `xs` has 3 elements, `[..]` has 2".into()
        }
    );
    assert!(pair.children().is_empty());
    let next = run.task("after_pair");
    assert!(next.state().is_trigger_failed(), "{:?}", next.state());
    assert!(
        message(next.state()).contains("`pair` ended Failed"),
        "{:?}",
        next.state()
    );
}

#[tokio::test]
async fn chained_maps_run_element_wise() {
    // `first[1]` cannot finish before `second[0]` has started: a map that waited for all
    // of `first` would never end (the timeout turns that into a failure).
    static GATE: Notify = Notify::const_new();
    static FIRST: TaskDef = def!(
        "first",
        ["x"],
        TaskBody::Async(|inputs, ctx| Box::pin(async move {
            if ctx.map_index() == Some(1) {
                GATE.notified().await;
            }
            Ok(value(arg(&inputs, 0)?))
        }))
    );
    static SECOND: TaskDef = def!(
        "second",
        ["x"],
        TaskBody::Async(|inputs, ctx| Box::pin(async move {
            if ctx.map_index() == Some(0) {
                GATE.notify_one();
            }
            Ok(value(arg(&inputs, 0)? * 10))
        }))
    );
    let f = flow::<Vec<u64>>(
        vec![
            task("xs", &LIST, vec![]),
            map("first", &FIRST, vec![fan(0)]),
            map("second", &SECOND, vec![zip(1)]),
        ],
        Some(reduce_src(2)),
    );
    let run = tokio::time::timeout(Duration::from_secs(20), f.run())
        .await
        .expect("second[0] must start while first[1] still runs");
    assert_eq!(run.output(), Ok(&vec![10, 20, 30]));
    let first = &run.task("first").children()[1];
    let second = &run.task("second").children()[0];
    assert!(second.started_at() <= first.ended_at());
}

#[tokio::test]
async fn sequential_executor_runs_element_by_element_then_in_declaration_order() {
    static ORDER: Mutex<Vec<String>> = Mutex::new(Vec::new());
    fn record(inputs: Vec<Value>, ctx: &TaskContext) -> Result<Value, TaskError> {
        ORDER.lock().unwrap().push(ctx.full_name());
        Ok(inputs
            .into_iter()
            .next()
            .unwrap_or_else(|| value(vec![1u64, 2, 3])))
    }
    static RECORD: TaskDef = def!("record", ["x"], TaskBody::Sync(record));
    let f = flow::<()>(
        vec![
            task("xs", &RECORD, vec![]),
            map("a", &RECORD, vec![fan(0)]),
            map("b", &RECORD, vec![zip(1)]),
            task("other", &RECORD, vec![]),
            task("total", &RECORD, vec![reduce(2)]),
        ],
        None,
    );
    let run = f.executor(SequentialExecutor).run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    let order = ORDER.lock().unwrap().clone();
    assert_eq!(
        order,
        ["xs", "a[0]", "b[0]", "other", "a[1]", "b[1]", "a[2]", "b[2]", "total"]
    );
}

#[tokio::test]
async fn a_failed_child_fails_only_its_own_index_downstream() {
    let f = flow::<Vec<u64>>(
        vec![
            map("checked", &FAIL_ON_TWO, vec![list(vec![1, 2, 3])]),
            map("doubled", &DOUBLE, vec![zip(0)]),
        ],
        Some(reduce_src(1)),
    );
    both(&f, |run| {
        assert!(run.state().is_failed());
        assert_eq!(states(run.task("checked")), ["Success", "Failed", "Success"]);
        assert_eq!(
            states(run.task("doubled")),
            ["Success", "TriggerFailed", "Success"]
        );
        assert_eq!(results(run.task("doubled")), [Some(2), None, Some(6)]);
        let tf = run.task("doubled").children()[1].state();
        assert_eq!(
            message(tf),
            "trigger `all_successful` did not pass (not every upstream task succeeded): \
             `checked[1]` ended Failed"
        );
        assert_eq!(
            message(run.state()),
            "failed task runs: `checked[1]` (Failed: two is not allowed), `doubled[1]` (TriggerFailed)"
        );
        assert_eq!(run.task("doubled").children()[1].attempts(), 0);
        assert!(run.output().is_err());
    })
    .await;
}

#[tokio::test]
async fn a_skipped_child_skips_only_its_own_index_and_the_flow_succeeds() {
    let f = flow::<Vec<u64>>(
        vec![
            map("checked", &SKIP_ON_TWO, vec![list(vec![1, 2, 3])]),
            map("doubled", &DOUBLE, vec![zip(0)]),
        ],
        Some(reduce_src(1)),
    );
    both(&f, |run| {
        assert!(run.state().is_success(), "{}", run.summary());
        assert_eq!(states(run.task("checked")), ["Success", "Skipped", "Success"]);
        assert_eq!(
            message(run.task("checked").children()[1].state()),
            "two is skipped"
        );
        assert_eq!(states(run.task("doubled")), ["Success", "Skipped", "Success"]);
        assert_eq!(
            message(run.task("doubled").children()[1].state()),
            "upstream `checked[1]` was skipped"
        );
        assert_eq!(run.output(), Ok(&vec![2, 6]));
    })
    .await;
}

#[tokio::test]
async fn an_empty_map_has_no_children_and_reduces_to_an_empty_vec() {
    static COUNT: TaskDef = def!(
        "count",
        ["xs"],
        TaskBody::Sync(|inputs, _| {
            let xs = take::<Vec<u64>>(inputs.into_iter().next().unwrap_or_else(|| value(())))?;
            Ok(value(xs.len() as u64 + 100))
        })
    );
    let f = flow::<u64>(
        vec![
            task("xs", &EMPTY, vec![]),
            map("once", &DOUBLE, vec![fan(0)]),
            map("twice", &DOUBLE, vec![zip(1)]),
            task("count", &COUNT, vec![reduce(2)]),
        ],
        Some(Source::Node(n(3))),
    );
    both(&f, |run| {
        assert!(run.state().is_success(), "{}", run.summary());
        assert_eq!(run.task("once").state(), &State::Mapped { children: 0 });
        assert_eq!(run.task("twice").state(), &State::Mapped { children: 0 });
        assert!(run.task("twice").children().is_empty());
        assert_eq!(run.task("count").state(), &State::Success);
        assert_eq!(run.output(), Ok(&100));
    })
    .await;
}

#[tokio::test]
async fn mapping_over_a_failed_upstream_is_trigger_failed() {
    let f = flow::<Vec<u64>>(
        vec![
            task("xs", &FAILS_LIST, vec![]),
            map("once", &DOUBLE, vec![fan(0)]),
            map("twice", &DOUBLE, vec![zip(1)]),
        ],
        Some(reduce_src(2)),
    );
    both(&f, |run| {
        assert!(run.state().is_failed());
        let once = run.task("once");
        assert!(once.state().is_trigger_failed(), "{:?}", once.state());
        assert!(once.children().is_empty());
        assert_eq!(
            message(once.state()),
            "trigger `all_successful` did not pass (not every upstream task succeeded): `xs` ended Failed"
        );
        assert!(run.task("twice").state().is_trigger_failed());
        assert!(run.output().is_err());
    })
    .await;
}

#[tokio::test]
async fn mapping_over_a_skipped_upstream_skips_the_whole_map() {
    let f = flow::<()>(
        vec![
            task("xs", &SKIPS, vec![]),
            map("once", &DOUBLE, vec![fan(0)]),
            map("twice", &DOUBLE, vec![zip(1)]),
        ],
        None,
    );
    let run = f.run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(message(run.task("once").state()), "upstream `xs` was skipped");
    assert_eq!(message(run.task("twice").state()), "upstream `once` was skipped");
    assert!(run.task("twice").children().is_empty());
}

#[tokio::test]
async fn a_reducer_is_trigger_failed_when_a_child_failed() {
    let f = flow::<u64>(
        vec![
            map("checked", &FAIL_ON_TWO, vec![list(vec![1, 2, 3])]),
            task("sum", &SUM, vec![reduce(0)]),
        ],
        Some(Source::Node(n(1))),
    );
    both(&f, |run| {
        assert!(run.state().is_failed());
        let sum = run.task("sum");
        assert!(sum.state().is_trigger_failed(), "{:?}", sum.state());
        assert_eq!(sum.attempts(), 0);
        assert_eq!(sum.started_at(), None);
        assert!(sum.ended_at().is_some());
        assert!(message(sum.state()).contains("`checked[1]` ended Failed"));
    })
    .await;
}

#[tokio::test]
async fn a_reducer_leaves_out_children_without_a_value() {
    static SUM_ALL: TaskDef = def!(
        "sum_all",
        ["xs"],
        triggered(Trigger::AllFinished),
        TaskBody::Sync(sum)
    );
    let f = flow::<u64>(
        vec![
            map("checked", &FAIL_ON_TWO, vec![list(vec![1, 2, 3, 4])]),
            task("sum", &SUM_ALL, vec![reduce(0)]),
        ],
        Some(Source::Node(n(1))),
    )
    .reference_tasks(["sum"])
    .unwrap();
    let run = f.run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(run.output(), Ok(&8));
}

#[tokio::test]
async fn per_child_any_trigger_sees_its_own_zipped_state() {
    static ON_FAILURE: TaskDef = def!(
        "on_failure",
        ["x"],
        TaskOptions {
            trigger: Trigger::AnyFailed,
            skip_on_upstream_skip: true,
            ..TaskOptions::DEFAULT
        },
        TaskBody::Sync(|_, _| Ok(value(0u64)))
    );
    let f = flow::<()>(
        vec![
            task("seven", &SEVEN, vec![]),
            map("checked", &FAIL_ON_TWO, vec![list(vec![1, 2, 3])]),
            after(map("on_failure", &ON_FAILURE, vec![list(vec![1, 2, 3])]), &[0]),
            map("rescue", &ON_FAILURE, vec![zip(1)]),
        ],
        None,
    );
    let run = f.run().await;
    // Ordering-only upstream `seven` succeeded: with no zipped input, `any_failed` is
    // decided for the whole map.
    assert!(run.task("on_failure").state().is_trigger_failed());
    assert!(run.task("on_failure").children().is_empty());
    // Zipped: each child decides on its own upstream child; the one whose upstream
    // failed runs, but has no value for its input.
    let rescue = run.task("rescue");
    assert_eq!(
        states(rescue),
        ["TriggerFailed", "TriggerFailed", "TriggerFailed"]
    );
    assert!(message(rescue.children()[0].state()).contains("no upstream task failed"));
    assert!(message(rescue.children()[1].state())
        .starts_with("input `x` has no value because `checked[1]` ended Failed"));
}

#[tokio::test]
async fn a_shared_failed_upstream_fails_the_whole_zipped_map() {
    let f = flow::<()>(
        vec![
            task("bad", &FAILS, vec![]),
            map("xs", &DOUBLE, vec![list(vec![1, 2])]),
            map("sum", &ADD, vec![zip(1), val(0)]),
        ],
        None,
    );
    let run = f.run().await;
    let sum = run.task("sum");
    assert!(sum.state().is_trigger_failed(), "{:?}", sum.state());
    assert!(sum.children().is_empty());
    assert_eq!(
        results(run.task("xs")),
        [None, None],
        "released when `sum` gave up"
    );
}

// ---------------------------------------------------------------- triggers and states

#[tokio::test]
async fn a_failed_upstream_trigger_fails_downstream_and_the_flow() {
    let f = flow::<u64>(
        vec![task("t1", &FAILS, vec![]), task("t2", &DOUBLE, vec![val(0)])],
        Some(Source::Node(n(1))),
    );
    both(&f, |run| {
        assert_eq!(
            run.task("t1").state(),
            &State::Failed {
                message: "boom".into()
            }
        );
        assert_eq!(run.task("t1").attempts(), 1);
        assert_eq!(
            run.task("t2").state(),
            &State::TriggerFailed {
                message: "trigger `all_successful` did not pass (not every upstream task succeeded): \
                          `t1` ended Failed"
                    .into()
            }
        );
        assert_eq!(run.task("t2").attempts(), 0);
        assert_eq!(
            run.state(),
            &State::Failed {
                message: "failed task runs: `t1` (Failed: boom), `t2` (TriggerFailed)".into()
            }
        );
    })
    .await;
}

#[tokio::test]
async fn all_failed_runs_after_a_failure_and_the_flow_succeeds() {
    static CLEANUP: TaskDef = def!(
        "cleanup",
        [],
        triggered(Trigger::AllFailed),
        TaskBody::Sync(seven)
    );
    let f = flow::<u64>(
        vec![
            task("t1", &FAILS, vec![]),
            after(task("cleanup", &CLEANUP, vec![]), &[0]),
        ],
        Some(Source::Node(n(1))),
    );
    both(&f, |run| {
        assert!(run.task("t1").state().is_failed());
        assert_eq!(run.task("cleanup").state(), &State::Success);
        assert!(run.state().is_success(), "{}", run.summary());
        assert_eq!(run.output(), Ok(&7));
    })
    .await;
}

#[tokio::test]
async fn all_failed_is_trigger_failed_when_the_upstream_succeeded() {
    static CLEANUP: TaskDef = def!(
        "cleanup",
        [],
        triggered(Trigger::AllFailed),
        TaskBody::Sync(seven)
    );
    let f = flow::<()>(
        vec![
            task("t1", &SEVEN, vec![]),
            after(task("cleanup", &CLEANUP, vec![]), &[0]),
        ],
        None,
    );
    let run = f.run().await;
    assert_eq!(
        message(run.task("cleanup").state()),
        "trigger `all_failed` did not pass (not every upstream task failed): `t1` ended Success"
    );
}

#[tokio::test]
async fn reference_tasks_decide_the_flow_state() {
    let nodes = || {
        vec![
            task("t1", &FAILS, vec![]),
            task("t2", &SEVEN, vec![]),
            after(task("t3", &SEVEN, vec![]), &[1]),
        ]
    };
    let run = flow::<()>(nodes(), None).run().await;
    assert!(run.state().is_failed(), "t1 is terminal");
    let run = flow::<()>(nodes(), None)
        .reference_tasks(["t3"])
        .unwrap()
        .run()
        .await;
    assert!(run.state().is_success());
    let run = flow::<()>(nodes(), None)
        .reference_tasks(["t2", "t1"])
        .unwrap()
        .run()
        .await;
    assert!(run.state().is_failed());
    let run = flow::<()>(nodes(), None)
        .reference_tasks(std::iter::empty())
        .unwrap()
        .run()
        .await;
    assert!(run.state().is_success(), "no reference task");
}

#[tokio::test]
async fn a_mapped_reference_task_fails_the_flow_through_a_child() {
    let f = flow::<()>(
        vec![
            map("checked", &FAIL_ON_TWO, vec![list(vec![1, 2, 3])]),
            task("seven", &SEVEN, vec![reduce(0)]),
        ],
        None,
    )
    .reference_tasks(["checked"])
    .unwrap();
    let run = f.run().await;
    assert_eq!(run.task("checked").state(), &State::Mapped { children: 3 });
    assert!(run.state().is_failed());
}

#[tokio::test]
async fn every_trigger_passes_with_no_upstreams() {
    static T1: TaskDef = def!(
        "all_successful",
        [],
        triggered(Trigger::AllSuccessful),
        TaskBody::Sync(seven)
    );
    static T2: TaskDef = def!(
        "all_finished",
        [],
        triggered(Trigger::AllFinished),
        TaskBody::Sync(seven)
    );
    static T3: TaskDef = def!(
        "any_successful",
        [],
        triggered(Trigger::AnySuccessful),
        TaskBody::Sync(seven)
    );
    static T4: TaskDef = def!(
        "any_failed",
        [],
        triggered(Trigger::AnyFailed),
        TaskBody::Sync(seven)
    );
    static T5: TaskDef = def!(
        "all_failed",
        [],
        triggered(Trigger::AllFailed),
        TaskBody::Sync(seven)
    );
    let defs: [&'static TaskDef; 5] = [&T1, &T2, &T3, &T4, &T5];
    let f = flow::<()>(defs.iter().map(|d| task(d.name, d, vec![])).collect(), None);
    both(&f, |run| {
        assert!(run.state().is_success());
        for t in run.tasks() {
            assert_eq!(t.state(), &State::Success, "{}", t.name());
        }
    })
    .await;
}

#[tokio::test]
async fn an_upstream_skip_skips_downstream_and_the_output_is_none() {
    let f = flow::<u64>(
        vec![task("t1", &SKIPS, vec![]), task("t2", &DOUBLE, vec![val(0)])],
        Some(Source::Node(n(1))),
    );
    let run = f.run().await;
    assert_eq!(
        run.task("t1").state(),
        &State::Skipped {
            message: "nothing to do".into()
        }
    );
    assert_eq!(run.task("t1").attempts(), 1);
    assert_eq!(
        run.task("t2").state(),
        &State::Skipped {
            message: "upstream `t1` was skipped".into()
        }
    );
    assert!(run.state().is_success());
    assert!(run.output().is_err(), "a skipped output task produces no output");
}

#[tokio::test]
async fn an_input_without_value_is_reported_by_name() {
    static ANYWAY: TaskDef = def!(
        "anyway",
        ["x"],
        TaskOptions {
            trigger: Trigger::AllFinished,
            skip_on_upstream_skip: false,
            ..TaskOptions::DEFAULT
        },
        TaskBody::Sync(double)
    );
    let f = flow::<()>(
        vec![
            task("bad", &FAILS, vec![]),
            task("quiet", &SKIPS, vec![]),
            task("after_bad", &ANYWAY, vec![val(0)]),
            task("after_quiet", &ANYWAY, vec![val(1)]),
        ],
        None,
    );
    let run = f.run().await;
    assert_eq!(
        run.task("after_bad").state(),
        &State::TriggerFailed {
            message: "input `x` has no value because `bad` ended Failed; a task that must run after a \
                      failure or skip should depend on it with an ordering-only dependency \
                      (`.after(..)`) instead of taking its result"
                .into()
        }
    );
    let quiet = run.task("after_quiet").state();
    assert!(quiet.is_skipped(), "{quiet:?}");
    assert!(message(quiet).starts_with("input `x` has no value because `quiet` ended Skipped"));
    assert_eq!(run.task("after_bad").attempts(), 0);
}

#[tokio::test]
async fn ordering_only_dependencies_wait_without_data() {
    static ORDER: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static SLOW: TaskDef = def!(
        "slow",
        [],
        TaskBody::Async(|_, ctx| Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            ORDER.lock().unwrap().push(ctx.full_name());
            Ok(value(1u64))
        }))
    );
    static FAST: TaskDef = def!(
        "fast",
        [],
        TaskBody::Sync(|_, ctx| {
            ORDER.lock().unwrap().push(ctx.full_name());
            Ok(value(2u64))
        })
    );
    let f = flow::<()>(
        vec![
            task("slow", &SLOW, vec![]),
            map("many", &SLOW, vec![list(vec![1, 2])]),
            after(task("fast", &FAST, vec![]), &[0, 1]),
        ],
        None,
    );
    let run = f.run().await;
    assert!(run.state().is_success());
    assert_eq!(ORDER.lock().unwrap().last().map(String::as_str), Some("fast"));
    assert_eq!(ORDER.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn gathered_inputs_are_built_from_their_parts() {
    static PAIR_SUM: TaskDef = def!(
        "pair_sum",
        ["pair"],
        TaskBody::Sync(|inputs, _| {
            let (a, b) = take::<(u64, u64)>(inputs.into_iter().next().unwrap_or_else(|| value(())))?;
            Ok(value(a + b))
        })
    );
    let mut g = graph(
        vec![
            task("seven", &SEVEN, vec![]),
            task(
                "pair_sum",
                &PAIR_SUM,
                vec![Input::Value(Source::Gather(
                    vec![Source::Param(0), Source::Node(n(0))],
                    collect_pair,
                ))],
            ),
        ],
        Some(Source::Node(n(1))),
    );
    g.params.push(ParamSpec {
        name: "k",
        ty: "u64",
        default: Some(value(35u64)),
        from_json: |j| {
            serde_json::from_value::<u64>(j)
                .map(value)
                .map_err(|e| e.to_string())
        },
        to_json: |v| serde_json::json!(v.downcast_ref::<u64>()),
    });
    let f = Flow::<u64>::from_graph(g);
    assert_eq!(f.run().await.output(), Ok(&42));
    let f = f.with_param("k", 1u64).unwrap();
    assert_eq!(f.run().await.output(), Ok(&8));
}

#[tokio::test]
async fn a_gathered_input_with_a_failed_part_is_trigger_failed() {
    let f = flow::<()>(
        vec![
            task("bad", &FAILS, vec![]),
            task(
                "pair_sum",
                &ADD,
                vec![Input::Value(Source::Gather(
                    vec![Source::Node(n(0)), Source::Const(value(1u64), "1")],
                    collect_pair,
                ))],
            ),
        ],
        None,
    );
    let run = f.run().await;
    assert!(run.task("pair_sum").state().is_trigger_failed());
}

// ---------------------------------------------------------------- retries, panics

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[tokio::test(start_paused = true)]
async fn a_sync_task_is_attempted_max_retries_plus_one_times() {
    static ALWAYS: TaskDef = def!(
        "always",
        [],
        retrying(3, Duration::from_secs(10)),
        TaskBody::Sync(|_, ctx| {
            CALLS.fetch_add(1, Ordering::SeqCst);
            Err(TaskError::fail(format!("attempt {} failed", ctx.attempt())))
        })
    );
    let start = tokio::time::Instant::now();
    let run = flow::<()>(vec![task("always", &ALWAYS, vec![])], None)
        .run()
        .await;
    let elapsed = start.elapsed();
    let t = run.task("always");
    assert_eq!(t.attempts(), 4);
    assert_eq!(CALLS.load(Ordering::SeqCst), 4);
    assert_eq!(
        t.state(),
        &State::Failed {
            message: "attempt 4 failed".into()
        }
    );
    assert!(run.state().is_failed());
    assert!(elapsed >= Duration::from_secs(30), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(31), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn an_async_task_is_attempted_max_retries_plus_one_times() {
    static ALWAYS: TaskDef = def!(
        "always",
        [],
        retrying(2, Duration::from_secs(5)),
        TaskBody::Async(|_, ctx| Box::pin(async move {
            Err(TaskError::fail(format!("attempt {} failed", ctx.attempt())))
        }))
    );
    let start = tokio::time::Instant::now();
    let run = flow::<()>(vec![task("always", &ALWAYS, vec![])], None)
        .run()
        .await;
    let elapsed = start.elapsed();
    assert_eq!(run.task("always").attempts(), 3);
    assert_eq!(
        run.task("always").state(),
        &State::Failed {
            message: "attempt 3 failed".into()
        }
    );
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(11),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn flaky_tasks_succeed_on_their_second_attempt() {
    static FLAKY_SYNC: TaskDef = def!(
        "flaky_sync",
        ["x"],
        retrying(5, Duration::from_secs(2)),
        TaskBody::Sync(|inputs, ctx| match ctx.attempt() {
            1 => Err(TaskError::fail("not yet")),
            _ => Ok(value(arg(&inputs, 0)? + 1)),
        })
    );
    static FLAKY_ASYNC: TaskDef = def!(
        "flaky_async",
        ["x"],
        retrying(5, Duration::from_secs(2)),
        TaskBody::Async(|inputs, ctx| Box::pin(async move {
            if ctx.attempt() == 1 {
                panic!("not yet");
            }
            Ok(value(arg(&inputs, 0)? + 1))
        }))
    );
    let f = flow::<Vec<u64>>(
        vec![
            map("a", &FLAKY_SYNC, vec![list(vec![1, 2])]),
            map("b", &FLAKY_ASYNC, vec![zip(0)]),
        ],
        Some(reduce_src(1)),
    );
    for f in [f.clone(), f.executor(SequentialExecutor)] {
        let start = tokio::time::Instant::now();
        let run = f.run().await;
        assert_eq!(run.output(), Ok(&vec![3, 4]), "{}", run.summary());
        for t in run.tasks() {
            assert!(t
                .children()
                .iter()
                .all(|c| c.attempts() == 2 && c.state().is_success()));
        }
        assert!(start.elapsed() >= Duration::from_secs(4), "{:?}", start.elapsed());
    }
}

#[tokio::test(start_paused = true)]
async fn a_skip_signal_is_never_retried() {
    static SKIPPY: TaskDef = def!(
        "skippy",
        [],
        retrying(3, Duration::from_secs(1)),
        TaskBody::Sync(skips)
    );
    let run = flow::<()>(vec![task("skippy", &SKIPPY, vec![])], None)
        .run()
        .await;
    assert_eq!(run.task("skippy").attempts(), 1);
    assert!(run.task("skippy").state().is_skipped());
}

#[tokio::test]
async fn panics_are_caught_and_the_flow_goes_on() {
    static SYNC_PANIC: TaskDef = def!(
        "sync_panic",
        ["x"],
        TaskBody::Sync(|inputs, _| {
            if arg(&inputs, 0)? == 2 {
                panic!("boom");
            }
            Ok(value(1u64))
        })
    );
    static ASYNC_PANIC: TaskDef = def!(
        "async_panic",
        [],
        TaskBody::Async(|_, _| Box::pin(async move {
            let n = 42;
            panic!("async boom {n}")
        }))
    );
    let f = flow::<()>(
        vec![
            map("mapped", &SYNC_PANIC, vec![list(vec![1, 2, 3])]),
            task("lone", &ASYNC_PANIC, vec![]),
            task("next", &DOUBLE, vec![val(1)]),
            task("fine", &SEVEN, vec![]),
        ],
        None,
    );
    both(&f, |run| {
        assert_eq!(states(run.task("mapped")), ["Success", "Failed", "Success"]);
        assert_eq!(
            run.task("mapped").children()[1].state(),
            &State::Failed {
                message: "task panicked: boom".into()
            }
        );
        assert_eq!(
            run.task("lone").state(),
            &State::Failed {
                message: "task panicked: async boom 42".into()
            }
        );
        assert!(run.task("next").state().is_trigger_failed());
        assert_eq!(run.task("fine").state(), &State::Success);
        assert!(run.state().is_failed());
    })
    .await;
}

// ---------------------------------------------------------------- context, results

#[tokio::test]
async fn the_context_names_the_task_run() {
    static WHO: TaskDef = def!(
        "whoami",
        ["x"],
        TaskBody::Sync(|_, ctx| {
            Ok(value(format!(
                "{} {} {} {} {:?} {} {}",
                ctx.flow_run_id(),
                ctx.flow_name(),
                ctx.task_name(),
                ctx.binding(),
                ctx.map_index(),
                ctx.attempt(),
                ctx.task_run_id()
            )))
        })
    );
    let f = flow::<()>(
        vec![task("xs", &LIST, vec![]), map("who", &WHO, vec![fan(0)])],
        None,
    );
    let run = f.run().await;
    let id = run.id();
    let got = run.task("who").children()[2].result::<String>().cloned();
    assert_eq!(got, Some(format!("{id} test whoami who Some(2) 1 {id}-1-2")));
    assert_ne!(f.run().await.id(), id, "a new id per run");
}

#[tokio::test]
async fn results_are_released_unless_kept() {
    let nodes = || {
        vec![
            task("xs", &LIST, vec![]),
            map("a", &DOUBLE, vec![fan(0)]),
            map("b", &DOUBLE, vec![zip(1)]),
            task("total", &SUM, vec![reduce(2)]),
        ]
    };
    let run = flow::<()>(nodes(), None).run().await;
    assert!(run.task("xs").result::<Vec<u64>>().is_none());
    assert_eq!(results(run.task("a")), [None, None, None]);
    assert_eq!(results(run.task("b")), [None, None, None]);
    assert_eq!(run.task("total").result::<u64>(), Some(&24), "terminal: kept");

    let run = flow::<()>(nodes(), None).keep_results().run().await;
    assert_eq!(run.task("xs").result::<Vec<u64>>(), Some(&vec![1, 2, 3]));
    assert_eq!(results(run.task("a")), [Some(2), Some(4), Some(6)]);
    assert_eq!(results(run.task("b")), [Some(4), Some(8), Some(12)]);

    // An intermediate task that feeds the output keeps its result.
    let run = flow::<Vec<u64>>(nodes(), Some(reduce_src(1))).run().await;
    assert_eq!(run.output(), Ok(&vec![2, 4, 6]));
    assert_eq!(results(run.task("a")), [Some(2), Some(4), Some(6)]);
    assert_eq!(results(run.task("b")), [None, None, None]);
}

#[tokio::test]
async fn the_last_consumer_takes_the_value_without_a_clone() {
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug)]
    struct Counted(u64);
    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::SeqCst);
            Counted(self.0)
        }
    }
    fn first(inputs: Vec<Value>) -> Value {
        inputs.into_iter().next().unwrap_or_else(|| value(()))
    }
    fn split_counted(v: Value) -> Vec<Value> {
        take::<Vec<Counted>>(v)
            .map(|v| v.into_iter().map(value).collect())
            .unwrap_or_default()
    }
    static MAKE: TaskDef = def!("make", [], TaskBody::Sync(|_, _| Ok(value(Counted(7)))));
    static MAKE_MANY: TaskDef = def!(
        "make_many",
        [],
        TaskBody::Sync(|_, _| Ok(value(vec![Counted(1), Counted(2)])))
    );
    static USE: TaskDef = def!(
        "use",
        ["c"],
        TaskBody::Sync(|inputs, _| Ok(value(take::<Counted>(first(inputs))?.0)))
    );
    let f = flow::<()>(
        vec![
            task("make", &MAKE, vec![]),
            task("use", &USE, vec![val(0)]),
            task("make_many", &MAKE_MANY, vec![]),
            map(
                "use_many",
                &USE,
                vec![Input::FanOut(Source::Node(n(2)), split_counted)],
            ),
        ],
        None,
    );
    let run = f.clone().run().await;
    assert!(run.state().is_success(), "{}", run.summary());
    assert_eq!(CLONES.load(Ordering::SeqCst), 0);
    let run = f.keep_results().run().await;
    assert!(run.state().is_success());
    assert_eq!(
        CLONES.load(Ordering::SeqCst),
        3,
        "kept results are cloned for their consumers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intermediate_results_of_a_map_chain_stay_bounded() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug)]
    struct Tracked(u64);
    impl Tracked {
        fn new(x: u64) -> Self {
            let live = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
            PEAK.fetch_max(live, Ordering::SeqCst);
            Tracked(x)
        }
    }
    impl Clone for Tracked {
        fn clone(&self) -> Self {
            Tracked::new(self.0)
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    static MAKE: TaskDef = def!(
        "make",
        ["x"],
        TaskBody::Sync(|inputs, _| Ok(value(Tracked::new(arg(&inputs, 0)?))))
    );
    static USE: TaskDef = def!(
        "use",
        ["t"],
        TaskBody::Async(|inputs, _| Box::pin(async move {
            tokio::task::yield_now().await;
            let t = take::<Tracked>(inputs.into_iter().next().unwrap_or_else(|| value(())))?;
            Ok(value(t.0))
        }))
    );
    const N: u64 = 3000;
    let f = flow::<Vec<u64>>(
        vec![
            map("made", &MAKE, vec![list((0..N).collect())]),
            map("used", &USE, vec![zip(0)]),
        ],
        Some(reduce_src(1)),
    )
    .executor(LocalExecutor::new().max_concurrency(8));
    let run = f.run().await;
    assert_eq!(run.output().map(Vec::len), Ok(N as usize));
    let peak = PEAK.swap(0, Ordering::SeqCst);
    assert!(peak <= 2 * 8 + 2, "{peak} intermediate results alive at once");
    drop(run);

    let run = f.keep_results().run().await;
    assert_eq!(run.output().map(Vec::len), Ok(N as usize));
    let peak = PEAK.load(Ordering::SeqCst);
    assert!(peak > N as usize, "{peak}: every result kept");
}

// ---------------------------------------------------------------- executors

#[tokio::test]
async fn max_concurrency_bounds_running_task_runs() {
    static NOW: AtomicUsize = AtomicUsize::new(0);
    static MAX: AtomicUsize = AtomicUsize::new(0);
    static BUSY: TaskDef = def!(
        "busy",
        ["x"],
        TaskBody::Async(|inputs, _| Box::pin(async move {
            let now = NOW.fetch_add(1, Ordering::SeqCst) + 1;
            MAX.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            NOW.fetch_sub(1, Ordering::SeqCst);
            Ok(value(arg(&inputs, 0)?))
        }))
    );
    let f = flow::<Vec<u64>>(
        vec![map("busy", &BUSY, vec![list((0..12).collect())])],
        Some(reduce_src(0)),
    );
    let run = f.executor(LocalExecutor::new().max_concurrency(3)).run().await;
    assert_eq!(run.output(), Ok(&(0..12).collect::<Vec<u64>>()));
    let max = MAX.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "{max}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_threads_bound_sync_bodies() {
    static NOW: AtomicUsize = AtomicUsize::new(0);
    static MAX: AtomicUsize = AtomicUsize::new(0);
    static BUSY: TaskDef = def!(
        "busy",
        ["x"],
        TaskBody::Sync(|inputs, _| {
            let now = NOW.fetch_add(1, Ordering::SeqCst) + 1;
            MAX.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            NOW.fetch_sub(1, Ordering::SeqCst);
            Ok(value(arg(&inputs, 0)?))
        })
    );
    let f = flow::<Vec<u64>>(
        vec![map("busy", &BUSY, vec![list((0..16).collect())])],
        Some(reduce_src(0)),
    );
    let run = f.executor(LocalExecutor::new().sync_threads(2)).run().await;
    assert_eq!(run.output(), Ok(&(0..16).collect::<Vec<u64>>()));
    let max = MAX.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "{max}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wide_map_pipeline() {
    const N: u64 = 20_000;
    static RANGE: TaskDef = def!(
        "range",
        [],
        TaskBody::Sync(|_, _| Ok(value((0..N).collect::<Vec<u64>>())))
    );
    let f = flow::<u64>(
        vec![
            task("xs", &RANGE, vec![]),
            map("a", &DOUBLE, vec![fan(0)]),
            map("b", &ASYNC_DOUBLE, vec![zip(1)]),
            map("c", &ADD, vec![zip(2), zip(1)]),
            task("total", &SUM, vec![reduce(3)]),
        ],
        Some(Source::Node(n(4))),
    );
    let run = f.run().await;
    assert_eq!(run.output(), Ok(&(6 * (N * (N - 1) / 2))));
    assert_eq!(run.task("c").children().len(), N as usize);
}

// ---------------------------------------------------------------- hand-wiring mistakes

#[tokio::test]
async fn a_graph_wired_wrongly_by_hand_fails_the_task_with_a_reason() {
    let f = flow::<()>(
        vec![
            task("xs", &LIST, vec![]),
            task("not_mapped", &DOUBLE, vec![fan(0)]),
            map("nothing_to_map", &DOUBLE, vec![val(0)]),
            map("a", &DOUBLE, vec![fan(0)]),
            task("whole", &DOUBLE, vec![val(3)]),
            task("unknown", &DOUBLE, vec![val(42)]),
            map("zip_unknown", &DOUBLE, vec![zip(42)]),
            map("zip_single", &DOUBLE, vec![zip(0)]),
        ],
        None,
    );
    let run = f.run().await;
    assert_eq!(
        message(run.task("not_mapped").state()),
        "input `x` is mapped but task `not_mapped` is not"
    );
    assert_eq!(
        message(run.task("nothing_to_map").state()),
        "task `nothing_to_map` is mapped but has no mapped input to map over"
    );
    assert_eq!(
        message(run.task("whole").state()),
        "input `x` reads mapped task `a` as a single value; reduce it or zip over it"
    );
    assert_eq!(
        message(run.task("unknown").state()),
        "input `x` reads unknown task #42"
    );
    assert_eq!(run.task("a").state(), &State::Mapped { children: 3 });
}

#[tokio::test]
async fn a_cycle_ends_the_run_with_both_tasks_never_run() {
    let f = flow::<()>(
        vec![
            after(task("a", &SEVEN, vec![]), &[1]),
            after(task("b", &SEVEN, vec![]), &[0]),
            task("free", &SEVEN, vec![]),
        ],
        None,
    );
    let run = tokio::time::timeout(Duration::from_secs(10), f.run())
        .await
        .expect("no hang");
    assert!(run.state().is_failed());
    assert!(message(run.task("a").state()).starts_with("never ran"));
    assert_eq!(run.task("free").state(), &State::Success);
}

#[tokio::test]
async fn a_task_may_read_the_same_upstream_twice() {
    let f = flow::<u64>(
        vec![
            task("seven", &SEVEN, vec![]),
            task("twice", &ADD, vec![val(0), val(0)]),
        ],
        Some(Source::Node(n(1))),
    );
    both(&f, |run| assert_eq!(run.output(), Ok(&14))).await;
}

#[test]
fn value_helpers_are_reexported() {
    // Keep `value::value` and `value::take` in sight: the bodies above rely on them.
    let v = value::value(3u64);
    assert_eq!(take::<u64>(Arc::clone(&v)).ok(), Some(3));
}

/// `cargo test -p flow-runtime --release --lib -- --ignored --nocapture wide_map_overhead`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "timing, run in release"]
async fn wide_map_overhead() {
    const N: u64 = 100_000;
    static RANGE: TaskDef = def!(
        "range",
        [],
        TaskBody::Sync(|_, _| Ok(value((0..N).collect::<Vec<u64>>())))
    );
    static ASYNC_ID: TaskDef = def!(
        "async_id",
        ["x"],
        TaskBody::Async(|inputs, _| Box::pin(async move { Ok(value(arg(&inputs, 0)?)) }))
    );
    for (label, def) in [("sync", &DOUBLE), ("async", &ASYNC_ID)] {
        let executors: [crate::executor::Executor; 2] =
            [LocalExecutor::new().into(), SequentialExecutor.into()];
        for executor in executors {
            let f = flow::<u64>(
                vec![
                    task("xs", &RANGE, vec![]),
                    map("a", def, vec![fan(0)]),
                    task("total", &SUM, vec![reduce(1)]),
                ],
                Some(Source::Node(n(2))),
            )
            .executor(executor.clone());
            let start = std::time::Instant::now();
            let run = f.run().await;
            let took = start.elapsed();
            assert!(run.state().is_success());
            println!(
                "{label} {executor:?}: {N} tasks in {took:?}: {:.2} us/task",
                took.as_secs_f64() * 1e6 / N as f64
            );
        }
    }
}

// ---------------------------------------------------------------- tracing

/// Records every span (name and fields) and event (fields) it sees.
#[derive(Default)]
struct Collector {
    next: AtomicUsize,
    spans: Mutex<Vec<(&'static str, String)>>,
    events: Mutex<Vec<String>>,
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Collector {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = String::new();
        span.record(&mut Fields(&mut fields));
        self.spans.lock().unwrap().push((span.metadata().name(), fields));
        tracing::span::Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) as u64 + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = format!("{} ", event.metadata().level());
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(fields);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(start_paused = true)]
async fn task_runs_are_traced_with_spans_and_state_events() {
    use tracing::instrument::WithSubscriber as _;
    static FLAKY: TaskDef = def!(
        "flaky",
        ["x"],
        retrying(1, Duration::from_secs(3)),
        TaskBody::Sync(|inputs, ctx| match ctx.attempt() {
            1 => Err(TaskError::fail("first attempt fails")),
            _ => Ok(value(arg(&inputs, 0)?)),
        })
    );
    // With a single scoped subscriber alive, tracing-core asks only the *current thread's*
    // subscriber about a callsite the first time it is hit, so another test hitting it
    // first would disable it for this one. A second live dispatcher makes it ask them all.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let collector = Arc::new(Collector::default());
    let f = flow::<()>(
        vec![
            map("flaky", &FLAKY, vec![list(vec![5])]),
            map("async_doubled", &ASYNC_DOUBLE, vec![zip(0)]),
            task("bad", &FAILS, vec![]),
            task("next", &DOUBLE, vec![val(2)]),
        ],
        None,
    );
    let run = f.run().with_subscriber(Arc::clone(&collector)).await;
    let id = run.id();
    let spans = collector.spans.lock().unwrap().clone();
    let events = collector.events.lock().unwrap().clone();
    let has_span = |name: &str, fields: &str| spans.iter().any(|(n, f)| *n == name && f == fields);
    assert!(
        has_span("flow_run", &format!("flow=\"test\" flow_run_id={id} ")),
        "{spans:#?}"
    );
    for (task, node, index, attempt) in [("flaky", 0, 0, 1), ("flaky", 0, 0, 2), ("async_doubled", 1, 0, 1)] {
        let fields =
            format!("task={task} map_index={index} attempt={attempt} flow_run_id={id} task_run_id={id}-{node}-{index} ");
        assert!(has_span("task_run", &fields), "{fields} in {spans:#?}");
    }
    assert!(
        has_span(
            "task_run",
            &format!("task=bad attempt=1 flow_run_id={id} task_run_id={id}-2 ")
        ),
        "{spans:#?}"
    );
    let has_event = |parts: &[&str]| events.iter().any(|e| parts.iter().all(|p| e.contains(p)));
    // Events inside a task run's span name only the state: the span carries the task,
    // map index, attempt and flow run id.
    for parts in [
        &["INFO", "message=Running"][..],
        &["INFO", "message=Retrying in 3s", "error=first attempt fails"],
        &["INFO", "message=Success"],
        &["INFO", "task=flaky", "children=1", "message=Mapped"],
        &["ERROR", "message=Failed", "error=boom"],
        &["WARN", "task=next", "message=TriggerFailed", "reason=trigger"],
        &["ERROR", "message=flow run Failed"],
    ] {
        assert!(has_event(parts), "{parts:?} in {events:#?}");
    }
}

/// The future of an async task run is allocated once per run: past glibc's per-thread
/// cache (1032 bytes) every run takes the slower allocator path, which cost about 9% of
/// the engine's time per async task when the job last grew. Keep it under 1 KiB.
#[test]
fn an_async_task_run_future_fits_the_fast_allocator_path() {
    use crate::context::{FlowRunId, TaskRunId};

    fn body(_: Vec<Value>, _: TaskContext) -> crate::task::BoxFuture {
        Box::pin(async { Ok(value(1u64)) })
    }
    static DEF: TaskDef = def!("sized", [], TaskBody::Async(body));
    let attempt = super::backend::Attempt {
        ticket: 0,
        def: &DEF,
        inputs: Vec::new(),
        ctx: TaskContext {
            id: TaskRunId {
                flow_run: FlowRunId::new(),
                node: 0,
                map_index: None,
            },
            flow_name: "sized",
            task_name: "sized",
            binding: Arc::from("sized"),
            attempt: 1,
            scheduled_start: std::time::SystemTime::now(),
            params: Arc::default(),
        },
        timeout: None,
        retry_on: None,
        report_start: false,
        result_here: true,
    };
    let size = super::backend::async_future_size(attempt);
    assert!(size <= 1024, "the future of an async task run is {size} bytes");
}
