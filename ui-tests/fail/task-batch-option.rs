use tideflow::prelude::*;

#[task(batch = 0)]
fn none_at_a_time(x: u64) -> u64 {
    x
}

#[task(batch = "small")]
fn vague(x: u64) -> u64 {
    x
}

#[task(batch = -5)]
fn negative(x: u64) -> u64 {
    x
}

#[task(batch)]
fn bare(x: u64) -> u64 {
    x
}

#[task(local, batch = 10)]
fn here(x: u64) -> u64 {
    x
}

fn main() {}
