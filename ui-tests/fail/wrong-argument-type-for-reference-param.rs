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
fn count(xs: &Vec<u64>) -> u64 {
    xs.len() as u64
}

flow! {
    pub fn f(n: u64 = 2) -> u64 {
        let s = text();
        count(s)
    }
}

fn main() {}
