use std::collections::{BTreeSet, HashSet, VecDeque};

use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn queue() -> VecDeque<u64> {
    VecDeque::from(vec![1, 2])
}

#[task]
fn ordered() -> BTreeSet<u64> {
    [3, 1, 2].into_iter().collect()
}

#[task]
fn unique() -> HashSet<u64> {
    [1, 1, 2].into_iter().collect()
}

#[task]
fn fixed() -> [u64; 3] {
    [1, 2, 3]
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn words() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

#[task]
fn shout(w: String) -> String {
    w.to_uppercase()
}

flow! {
    /// Maps over every kind of collection, from tasks, parameters and constants.
    pub fn maps(n: u64 = 3, xs: Vec<u64> = vec![4, 5]) -> Vec<u64> {
        let from_vec = double.map(numbers(n));
        let from_queue = double.map(queue());
        let from_set = double.map(ordered());
        let from_hash = double.map(unique());
        let from_array = double.map(fixed());
        let from_param = double.map(xs);
        let from_const_array = double.map([1, 2, 3]);
        let from_const_vec = double.map(vec![1, 2, 3]);
        let w = words();
        let loud = shout.map(w);
        double.map(from_vec)
    }
}

fn main() {}
