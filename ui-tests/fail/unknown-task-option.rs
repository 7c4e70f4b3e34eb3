use tideflow::prelude::*;

#[task(retries = 3)]
fn flaky() -> u64 {
    1
}

fn main() {}
