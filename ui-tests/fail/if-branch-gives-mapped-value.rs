use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn f(n: u64 = 2, flag: bool = true) -> Vec<u64> {
        let xs = numbers(n);
        if flag { double.map(xs) } else { xs }
    }
}

fn main() {}
