use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn factor() -> u64 {
    3
}

#[task]
fn scale(x: u64, k: u64) -> u64 {
    x * k
}

#[task]
fn offset(base: Vec<u64>, x: u64) -> u64 {
    base.len() as u64 + x
}

flow! {
    /// `unmapped(..)` passes one value to every child: a task result, a parameter, a
    /// constant, a whole collection.
    pub fn broadcast(n: u64 = 4, k: u64 = 2) -> Vec<u64> {
        let xs = numbers(n);
        let f = factor();
        let by_result = scale.map(xs, unmapped(f));
        let by_param = scale.map(xs, unmapped(k));
        let by_const = scale.map(xs, unmapped(10));
        let by_nested = scale.map(by_result, unmapped(factor()));
        offset.map(unmapped(xs), by_param)
    }
}

fn main() {}
