use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn f(n: u64 = 2) -> u64 {
        if n > 2 { double(n) } else { double(1) }
    }
}

fn main() {}
