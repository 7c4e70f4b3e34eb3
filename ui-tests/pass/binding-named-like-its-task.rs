use tideflow::prelude::*;

#[task]
fn scores() -> Vec<u64> {
    vec![3, 1, 2]
}

#[task]
fn best(x: u64) -> u64 {
    x
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

flow! {
    /// A binding may share its task's name.
    pub fn same_names() -> u64 {
        let scores = scores();
        let best = best.map(scores);
        let total = total(best);
        total
    }
}

fn main() {}
