use tideflow::prelude::*;

pub struct Counter;

impl Counter {
    #[task]
    pub fn count(&self) -> u64 {
        1
    }
}

fn main() {}
