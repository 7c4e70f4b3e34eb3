//! Flows called as tasks of other flows: whole, mapped, with no output, with `.after`.

use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
fn say(x: u64) {
    println!("{x}");
}

flow! {
    /// Sum of 1..=n.
    pub fn sum_to(n: u64 = 3) -> u64 {
        total(numbers(n))
    }
}

flow! {
    pub fn announce(x: u64 = 1) {
        say(x);
    }
}

flow! {
    pub fn parent(n: u64 = 4) -> u64 {
        let xs = numbers(n);
        let sums = sum_to.map(xs);
        let all = total(sums);
        announce(all);
        sum_to(all).after(sums)
    }
}

fn main() {
    let _ = parent();
}
