use tideflow::prelude::*;

#[task(retry_delay = "")]
fn flaky() -> u64 {
    1
}

fn main() {}
