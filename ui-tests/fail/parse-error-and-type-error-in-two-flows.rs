use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

// A syntax error in one flow does not hide the mistakes of the others: both are
// reported at once.
flow! {
    pub fn broken(n u64 = 2) -> u64 {
        double(n)
    }

    pub fn mistyped(name: String = "a".into()) -> u64 {
        double(name)
    }
}

fn main() {
    let _: Flow<u64> = broken();
    let _: Flow<u64> = mistyped();
}
