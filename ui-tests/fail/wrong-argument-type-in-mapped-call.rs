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
fn scale(x: u64, k: u64, label: u64) -> u64 {
    x * k + label
}

flow! {
    pub fn f(n: u64 = 2) -> Vec<u64> {
        let xs = numbers(n);
        scale.map(xs, unmapped(n), "k")
    }
}

fn main() {}
