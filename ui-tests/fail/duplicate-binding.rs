use tideflow::prelude::*;

#[task]
fn load() -> u64 {
    1
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn twice() -> u64 {
        let x = load();
        let x = double(x);
        x
    }
}

fn main() {}
