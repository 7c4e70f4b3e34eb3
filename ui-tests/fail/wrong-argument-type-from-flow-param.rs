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
fn shout(s: String) -> String {
    s.to_uppercase()
}

flow! {
    pub fn f(n: u64 = 2) -> String {
        shout(n)
    }
}

fn main() {}
