use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[derive(Clone, Debug)]
pub struct Settings {
    factor: u64,
}

#[task(local)]
fn apply(s: Settings) -> u64 {
    s.factor
}

flow! {
    pub fn f(s: Settings) -> u64 {
        apply(s)
    }
}

fn main() {}
