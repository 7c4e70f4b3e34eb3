use tideflow::prelude::*;

#[task(cache_for = "1 fortnight")]
fn a(x: u64) -> u64 {
    x
}

#[task(cache_for = "0s")]
fn b(x: u64) -> u64 {
    x
}

#[task(cache_key = "  ")]
fn c(x: u64) -> u64 {
    x
}

#[task(cache_key = shared)]
fn d(x: u64) -> u64 {
    x
}

#[task(persist = "yes")]
fn e(x: u64) -> u64 {
    x
}

fn main() {}
