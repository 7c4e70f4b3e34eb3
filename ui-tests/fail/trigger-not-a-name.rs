use tideflow::prelude::*;

#[task(trigger = 3)]
fn cleanup() -> u64 {
    1
}

fn main() {}
