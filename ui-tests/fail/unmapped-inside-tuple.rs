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
fn pair(x: u64, p: (u64, u64)) -> u64 {
    x + p.0 + p.1
}

flow! {
    pub fn f(n: u64 = 2) -> u64 {
        let xs = numbers(n);
        let p = pair.map(xs, (unmapped(n), n));
        n
    }
}

fn main() {}
