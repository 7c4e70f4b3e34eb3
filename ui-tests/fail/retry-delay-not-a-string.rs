use tideflow::prelude::*;

#[task(retry_delay = 2)]
fn flaky() -> u64 {
    1
}

fn main() {}
