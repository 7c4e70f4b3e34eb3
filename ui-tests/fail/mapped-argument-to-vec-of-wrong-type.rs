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
fn total(xs: Vec<String>) -> usize {
    xs.len()
}

flow! {
    pub fn f(n: u64 = 2) -> usize {
        let ds = double.map(numbers(n));
        total(ds)
    }
}

fn main() {}
