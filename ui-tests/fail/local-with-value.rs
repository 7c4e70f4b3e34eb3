use tideflow::prelude::*;

#[task(local = true)]
fn store() -> u64 {
    1
}

fn main() {}
