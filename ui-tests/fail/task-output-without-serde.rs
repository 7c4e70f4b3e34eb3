use tideflow::prelude::*;

#[derive(Clone, Debug)]
pub struct Reading {
    celsius: f64,
}

#[task]
fn read() -> Reading {
    Reading { celsius: 21.5 }
}

fn main() {}
