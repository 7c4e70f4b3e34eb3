use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn label(x: u64) -> String {
    x.to_string()
}

#[task]
fn join(x: u64, doubled: u64, text: String) -> String {
    format!("{x} {doubled} {text}")
}

flow! {
    /// Element `i` of each mapped argument goes to child `i`.
    pub fn zipped(n: u64 = 4) -> Vec<String> {
        let xs = numbers(n);
        let doubled = double.map(xs);
        let labels = label.map(xs);
        join.map(xs, doubled, labels)
    }
}

fn main() {}
