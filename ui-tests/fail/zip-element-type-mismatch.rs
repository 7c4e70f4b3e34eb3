use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn label(x: u64) -> String {
    x.to_string()
}

flow! {
    pub fn f(n: u64 = 2) -> Vec<u64> {
        let xs = numbers(n);
        let ds = double.map(xs);
        let labels = label.map(xs);
        double.map(labels)
    }
}

fn main() {}
