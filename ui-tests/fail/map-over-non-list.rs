use tideflow::prelude::*;

#[task]
fn temperature() -> f64 {
    21.5
}

#[task]
fn double(x: f64) -> f64 {
    x * 2.0
}

flow! {
    pub fn doubled() -> Vec<f64> {
        let t = temperature();
        double.map(t)
    }
}

fn main() {}
