use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

flow! {
    pub fn listed(n: u64 = "ten") -> Vec<u64> {
        numbers(n)
    }
}

fn main() {}
