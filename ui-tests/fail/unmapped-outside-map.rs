use tideflow::prelude::*;

#[task]
fn temperature() -> f64 {
    21.5
}

#[task]
fn scale(x: f64, k: f64) -> f64 {
    x * k
}

flow! {
    pub fn scaled() -> f64 {
        let t = temperature();
        scale(unmapped(t), 2.0)
    }
}

fn main() {}
