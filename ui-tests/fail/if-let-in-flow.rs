use tideflow::prelude::*;

#[task]
fn find(n: u64) -> Option<u64> {
    Some(n)
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn f(n: u64 = 2) {
        let found = find(n);
        if let Some(x) = found {
            double(x);
        }
    }
}

fn main() {}
