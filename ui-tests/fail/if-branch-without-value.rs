use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn f(n: u64 = 2, flag: bool = true) -> u64 {
        let y = if flag { double(n) } else { let z = double(1); };
        double(y)
    }
}

fn main() {}
