use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    /// `let _ = ..` runs a step nobody reads, like an unbound call; `_name` is a binding.
    pub fn underscores(n: u64 = 2) -> u64 {
        let _ = double(n);
        let _ = double.map([1, 2]);
        let _kept = double(n);
        double(_kept)
    }
}

fn main() {}
