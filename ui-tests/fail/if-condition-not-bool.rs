use tideflow::prelude::*;

#[task]
fn count(n: u64) -> u64 {
    n
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn f(n: u64 = 2) -> u64 {
        let c = count(n);
        if c { double(n) } else { double(1) }
    }
}

fn main() {}
