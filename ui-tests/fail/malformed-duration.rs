use tideflow::prelude::*;

#[task(max_retries = 3, retry_delay = "2 parsecs")]
fn flaky() -> u64 {
    1
}

fn main() {}
