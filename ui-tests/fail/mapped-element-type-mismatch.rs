use serde::{Deserialize, Serialize};
use tideflow::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Chunk(u32);

#[task]
fn chunks() -> Vec<Chunk> {
    vec![Chunk(1), Chunk(2)]
}

#[task]
fn double(x: f64) -> f64 {
    x * 2.0
}

flow! {
    pub fn doubled() -> Vec<f64> {
        let cs = chunks();
        double.map(cs)
    }
}

fn main() {}
