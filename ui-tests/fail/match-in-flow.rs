use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn f(n: u64 = 2) -> u64 {
        match n {
            0 => double(1),
            _ => double(n),
        }
    }
}

fn main() {}
