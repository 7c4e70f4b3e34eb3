use tideflow::prelude::*;

#[task]
fn shout(s: &str) -> String {
    s.to_uppercase()
}

fn main() {}
