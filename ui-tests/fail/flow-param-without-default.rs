use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn doubled(x: u64) -> u64 {
        double(x)
    }
}

fn main() {}
