use tideflow::prelude::*;

#[task]
unsafe fn one() -> u64 {
    1
}

fn main() {}
