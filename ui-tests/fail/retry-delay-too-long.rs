use tideflow::prelude::*;

#[task(retry_delay = "1000 years")]
fn flaky() -> u64 {
    1
}

fn main() {}
