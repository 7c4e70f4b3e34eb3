use tideflow::prelude::*;

#[task(max_retries = 5000000000)]
fn flaky() -> u64 {
    1
}

fn main() {}
