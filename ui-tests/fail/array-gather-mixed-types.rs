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
fn text() -> String {
    "x".to_owned()
}

#[task]
fn three(xs: [u64; 3]) -> u64 {
    xs.iter().sum()
}

flow! {
    pub fn f(n: u64 = 2) -> u64 {
        let d = double(n);
        let s = text();
        three([d, s, d])
    }
}

fn main() {}
