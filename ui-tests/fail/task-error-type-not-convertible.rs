use tideflow::prelude::*;

#[task]
fn parse(s: String) -> Result<u64, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

fn main() {}
