use tideflow::prelude::*;

#[task]
fn double(x: f64) -> f64 {
    x * 2.0
}

flow! {
    pub fn doubled(x: f64 = 1.0) -> f64 {
        double(x, 3.0)
    }
}

fn main() {}
