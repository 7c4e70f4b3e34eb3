use tideflow::prelude::*;

#[derive(Clone, Debug)]
pub struct Model {
    weights: Vec<f64>,
}

#[task(cache_for = "1h")]
fn train(rows: Vec<f64>) -> Model {
    Model { weights: rows }
}

fn main() {}
