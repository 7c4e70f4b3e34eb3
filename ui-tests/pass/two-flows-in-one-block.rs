use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    pub fn first(x: u64 = 1) -> u64 {
        double(x)
    }

    fn second(x: u64 = 2) -> u64 {
        let d = double(x);
        double(d)
    }

    pub(crate) fn third() -> Vec<u64> {
        double.map([1, 2])
    }
}

fn main() {
    let _ = (first(), second(), third());
}
