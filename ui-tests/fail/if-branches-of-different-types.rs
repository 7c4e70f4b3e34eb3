use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn describe(x: u64) -> String {
    format!("{x}")
}

flow! {
    pub fn f(n: u64 = 2, flag: bool = true) -> u64 {
        let y = if flag { double(n) } else { describe(n) };
        double(y)
    }
}

fn main() {}
