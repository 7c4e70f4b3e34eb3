//! `batch`: each run alone on a cluster, or at most N runs per unit of work.
use tideflow::prelude::*;

#[task(batch = false)]
fn alone(x: u64) -> u64 {
    x
}

#[task(batch = 100, max_retries = 2)]
fn bounded(x: u64) -> u64 {
    x + 1
}

#[task(batch = true)]
fn as_the_executor_decides(x: u64) -> u64 {
    x * 2
}

flow! {
    fn batched(xs: Vec<u64> = vec![1, 2, 3]) -> Vec<u64> {
        let a = alone.map(xs);
        let b = bounded.map(a);
        as_the_executor_decides.map(b)
    }
}

fn main() {}
