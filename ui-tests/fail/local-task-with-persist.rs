use tideflow::prelude::*;

#[task(local, persist)]
fn length(s: String) -> usize {
    s.len()
}

#[task(cache_for = "1h", local)]
fn shout(s: String) -> String {
    s.to_uppercase()
}

fn main() {}
