use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

// Each flow of a block parses on its own: both syntax errors are reported at once.
flow! {
    pub fn first(n: u64 = 2) -> u64 {
        let x = double(n)
        double(x)
    }

    pub fn second(n: u64 = 2,, m: u64 = 3) -> u64 {
        double(n)
    }

    pub fn third(n: u64 = 3) -> u64 {
        double(n)
    }
}

fn main() {
    let _: Flow<u64> = first();
    let _: Flow<u64> = second();
    let _: Flow<u64> = third();
}
