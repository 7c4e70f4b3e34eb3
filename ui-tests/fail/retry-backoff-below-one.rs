use tideflow::prelude::*;

#[task(max_retries = 3, retry_delay = "1s", retry_backoff = 0.5)]
fn fetch() -> u64 {
    1
}

fn main() {}
