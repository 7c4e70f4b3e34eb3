use tideflow::prelude::*;

#[task]
const fn one() -> u64 {
    1
}

fn main() {}
