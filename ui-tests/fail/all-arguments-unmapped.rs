use tideflow::prelude::*;

#[task]
fn numbers() -> Vec<f64> {
    vec![1.0, 2.0]
}

#[task]
fn scale(xs: Vec<f64>, k: f64) -> f64 {
    xs.iter().sum::<f64>() * k
}

flow! {
    pub fn scaled() -> Vec<f64> {
        let xs = numbers();
        scale.map(unmapped(xs), unmapped(2.0))
    }
}

fn main() {}
