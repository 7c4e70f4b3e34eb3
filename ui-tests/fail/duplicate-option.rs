use tideflow::prelude::*;

#[task(max_retries = 3, retry_delay = "1s", max_retries = 5)]
fn flaky() -> u64 {
    1
}

fn main() {}
