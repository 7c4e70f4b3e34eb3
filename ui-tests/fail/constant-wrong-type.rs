use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn doubled() -> u64 {
        double("two")
    }
}

fn main() {}
