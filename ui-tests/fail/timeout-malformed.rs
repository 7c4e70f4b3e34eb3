use tideflow::prelude::*;

#[task(timeout = "thirty seconds")]
fn fetch() -> u64 {
    1
}

fn main() {}
