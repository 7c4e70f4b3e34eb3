use tideflow::prelude::*;

#[task]
fn setup() {}

#[task]
fn load() -> u64 {
    1
}

flow! {
    pub fn ordered() -> u64 {
        setup();
        load().after(setup)
    }
}

fn main() {}
