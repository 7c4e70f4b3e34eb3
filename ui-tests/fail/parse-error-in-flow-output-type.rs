use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

// The output type of `broken` does not parse, so its stub's output is an error type:
// neither `main` nor the flow that uses `broken`'s output report anything more.
flow! {
    pub fn broken(n: u64 = 2) -> Vec<u64>> {
        numbers(n)
    }
}

flow! {
    pub fn summed(n: u64 = 3) -> u64 {
        let xs = broken(n);
        total(xs)
    }
}

fn main() {
    let _: Flow<Vec<u64>> = broken();
    let _: Flow<u64> = summed();
}
