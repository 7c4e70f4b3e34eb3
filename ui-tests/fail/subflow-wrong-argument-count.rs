use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

flow! {
    pub fn f(n: u64 = 2) -> u64 {
        double(n)
    }
}

flow! {
    pub fn outer() -> u64 {
        f()
    }
}

fn main() {}
