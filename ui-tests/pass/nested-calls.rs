use tideflow::prelude::*;

#[task]
fn add1(x: u64) -> u64 {
    x + 1
}

#[task]
fn sum(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

flow! {
    /// Task calls inside arguments become their own steps.
    pub fn nested(n: u64 = 3) -> u64 {
        let a = add(add1(n), add1(add1(n)));
        let b = sum(add1.map(add1.map([1, 2, 3])));
        let c = sum(add1.map(numbers(n)));
        add(a, sum(add1.map(numbers(b))))
    }

    /// The output may be a nested call too.
    pub fn nested_tail() -> u64 {
        sum(add1.map(vec![1, 2]))
    }
}

fn main() {}
