use tideflow::prelude::*;

#[task]
fn len(s: &&String) -> usize {
    s.len()
}

fn main() {}
