//! A user trait in scope, implemented for every type, whose `&self` methods share names
//! with methods the generated code calls on `&mut` receivers (`Iterator::next`, the flow
//! builder's `param`, `task`, `map`, `gate`, `merge`, `finish`), must not capture those
//! calls: method lookup tries `&self` before `&mut self`, so generated code must call them
//! by path.
#![allow(dead_code)]

use tideflow::prelude::*;

pub trait Cursor {
    fn next(&self) {}
    fn param(&self) {}
    fn task(&self) {}
    fn map(&self) {}
    fn gate(&self) {}
    fn merge(&self) {}
    fn finish(&self) {}
}

impl<T: ?Sized> Cursor for T {}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
async fn double(x: &u64) -> u64 {
    x * 2
}

flow! {
    pub fn with_cursor(n: u64 = 2, flag: bool = true) -> Vec<u64> {
        let xs = numbers(n);
        let ys = if flag { numbers(n) } else { xs };
        double.map(ys)
    }
}

fn main() {}
