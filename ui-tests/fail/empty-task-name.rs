use tideflow::prelude::*;

#[task(name = "")]
fn double(x: u64) -> u64 {
    x * 2
}

fn main() {}
