use tideflow::prelude::*;

#[task(tags = db)]
fn store() -> u64 {
    1
}

fn main() {}
