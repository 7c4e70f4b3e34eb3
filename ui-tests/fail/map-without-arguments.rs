use tideflow::prelude::*;

#[task]
fn tick() -> u64 {
    1
}

flow! {
    pub fn ticks() -> Vec<u64> {
        tick.map()
    }
}

fn main() {}
