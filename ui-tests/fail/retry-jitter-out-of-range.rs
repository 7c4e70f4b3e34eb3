use tideflow::prelude::*;

#[task(max_retries = 3, retry_delay = "1s", retry_jitter = 1.5)]
fn fetch() -> u64 {
    1
}

fn main() {}
