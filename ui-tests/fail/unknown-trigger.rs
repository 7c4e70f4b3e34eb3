use tideflow::prelude::*;

#[task(trigger = all_done)]
fn cleanup() {}

fn main() {}
