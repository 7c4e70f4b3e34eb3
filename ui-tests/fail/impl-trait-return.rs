use tideflow::prelude::*;

#[task]
fn show() -> impl std::fmt::Display {
    1
}

fn main() {}
