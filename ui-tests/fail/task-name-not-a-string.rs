use tideflow::prelude::*;

#[task(name = load)]
fn load() -> u64 {
    1
}

fn main() {}
