use tideflow::prelude::*;

#[task(skip_on_upstream_skip = "no")]
fn cleanup() -> u64 {
    1
}

fn main() {}
