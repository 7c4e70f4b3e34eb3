//! A nested task call whose arguments are all constants (or that takes none) is still a
//! task step: it must not be evaluated as a plain function call while the graph is built.
use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
async fn fetch() -> Vec<u64> {
    vec![1, 2, 3]
}

#[task]
fn whoami(ctx: &TaskContext) -> String {
    ctx.task_name().to_owned()
}

#[task]
fn shout(s: String) -> String {
    s.to_uppercase()
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn constant_nested() -> String {
        let a = total(numbers(3));
        let b = total(fetch());
        let c = double.map(fetch());
        shout(whoami())
    }
}

fn main() {
    // Each call above is a node of its own: numbers, total, fetch, total, fetch, double,
    // whoami, shout.
    let flow = constant_nested();
    let names: Vec<&str> = flow.graph().nodes.iter().map(|n| n.task.name).collect();
    assert_eq!(names.len(), 8, "nested calls were not all wired as tasks: {names:?}");
}
