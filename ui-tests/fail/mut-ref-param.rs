use tideflow::prelude::*;

#[task]
fn push(xs: &mut Vec<u64>) -> usize {
    xs.push(1);
    xs.len()
}

fn main() {}
