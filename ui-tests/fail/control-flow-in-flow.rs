use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn f(n: u64 = 2) {
        for i in 0..n {
            double(i);
        }
    }
}

fn main() {}
