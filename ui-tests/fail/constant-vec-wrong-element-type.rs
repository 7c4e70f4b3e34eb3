use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

flow! {
    pub fn f(n: u64 = 2) -> u64 {
        total(vec!["a", "b"])
    }
}

fn main() {}
