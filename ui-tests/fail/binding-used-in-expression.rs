use tideflow::prelude::*;

#[task]
fn count() -> u64 {
    1
}

#[task]
fn clean(x: u64) -> u64 {
    x
}

flow! {
    pub fn cleaned() -> u64 {
        let x = count();
        clean(x + 1)
    }
}

fn main() {}
