use serde::{Deserialize, Serialize};
use tideflow::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Chunk(u32);

#[task]
fn chunks() -> Vec<Chunk> {
    vec![Chunk(1), Chunk(2)]
}

#[task]
fn clean(c: Chunk) -> Chunk {
    c
}

#[task]
fn tip(c: Chunk) -> u32 {
    c.0
}

flow! {
    pub fn tips() -> u32 {
        let cs = chunks();
        let cleaned = clean.map(cs);
        tip(cleaned)
    }
}

fn main() {}
