use serde::{Deserialize, Serialize};
use tideflow::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    lines: Vec<String>,
}

#[task]
fn report() -> Report {
    Report { lines: Vec::new() }
}

fn main() {}
