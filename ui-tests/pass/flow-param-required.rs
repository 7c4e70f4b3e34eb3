use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    /// `x` has no default: a required parameter, which every run sets.
    pub fn doubled(x: u64) -> u64 {
        double(x)
    }
}

fn main() {
    let _flow = doubled().with_param("x", 21u64);
}
