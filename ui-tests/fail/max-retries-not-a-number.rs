use tideflow::prelude::*;

#[task(max_retries = "3")]
fn flaky() -> u64 {
    1
}

fn main() {}
