use tideflow::prelude::*;

#[task]
fn temperature() -> f64 {
    21.5
}

flow! {
    pub fn single() -> String {
        let t = temperature();
        t
    }
}

fn main() {}
