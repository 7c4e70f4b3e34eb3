use tideflow::prelude::*;

#[derive(Clone, Debug)]
pub struct Reading {
    celsius: f64,
}

#[task]
fn fahrenheit(r: Reading) -> f64 {
    r.celsius * 9.0 / 5.0 + 32.0
}

fn main() {}
