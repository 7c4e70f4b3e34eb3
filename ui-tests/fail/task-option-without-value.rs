use tideflow::prelude::*;

#[task(max_retries)]
fn flaky() -> u64 {
    1
}

fn main() {}
