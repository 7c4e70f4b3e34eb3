use tideflow::prelude::*;

#[task]
fn load() -> Vec<u64> {
    vec![1, 2]
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

flow! {
    pub fn totals() -> u64 {
        let raw = load();
        total(rwa)
    }
}

fn main() {}
