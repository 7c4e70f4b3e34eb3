use tideflow::prelude::*;

fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn doubled(x: u64 = 1) -> u64 {
        double(x)
    }
}

fn main() {}
