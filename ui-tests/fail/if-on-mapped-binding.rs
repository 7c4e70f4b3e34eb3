use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn is_even(x: u64) -> bool {
    x % 2 == 0
}

#[task]
fn notify(n: u64) {
    let _ = n;
}

flow! {
    pub fn f(n: u64 = 4) {
        let xs = numbers(n);
        let evens = is_even.map(xs);
        if evens {
            notify(n);
        }
    }
}

fn main() {}
