use tideflow::prelude::*;

#[task(retries = 3, retry_delay = "soon", trigger = sometimes, local = false)]
fn flaky() -> u64 {
    1
}

fn main() {}
