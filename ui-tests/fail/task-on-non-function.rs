use tideflow::prelude::*;

#[task]
pub struct Load;

fn main() {}
