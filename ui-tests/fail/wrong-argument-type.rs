use serde::{Deserialize, Serialize};
use tideflow::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Chunk(u32);

#[task]
fn temperature() -> f64 {
    21.5
}

#[task]
fn clean(c: Chunk) -> Chunk {
    c
}

flow! {
    pub fn weather() -> Chunk {
        let t = temperature();
        clean(t)
    }
}

fn main() {}
