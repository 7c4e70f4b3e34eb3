use tideflow::prelude::*;

#[task(tags = ["db", io])]
fn store() -> u64 {
    1
}

fn main() {}
