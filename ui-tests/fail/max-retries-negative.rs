use tideflow::prelude::*;

#[task(max_retries = -1)]
fn flaky() -> u64 {
    1
}

fn main() {}
