use tideflow::prelude::*;

#[task]
fn scale(x: f64, k: f64) -> f64 {
    x * k
}

flow! {
    pub fn scaled(x: f64 = 1.0) -> f64 {
        scale(x)
    }
}

fn main() {}
