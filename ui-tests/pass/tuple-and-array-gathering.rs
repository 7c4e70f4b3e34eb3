use tideflow::prelude::*;

#[task]
fn count() -> u64 {
    3
}

#[task]
fn name() -> String {
    "x".into()
}

#[task]
fn pair(p: (u64, String)) -> String {
    format!("{p:?}")
}

#[task]
fn triple(p: (u64, String, u64)) -> String {
    format!("{p:?}")
}

#[task]
fn three(xs: [u64; 3]) -> u64 {
    xs.iter().sum()
}

#[task]
fn nested(p: ((u64, u64), String)) -> String {
    format!("{p:?}")
}

#[task]
fn with_param(p: (u64, u64)) -> u64 {
    p.0 + p.1
}

#[task]
fn scale(x: u64, p: (u64, String)) -> u64 {
    x * p.0
}

flow! {
    /// Tuples and arrays of bindings are gathered into one argument.
    pub fn gathered(n: u64 = 2) -> String {
        let c = count();
        let s = name();
        let a = pair((c, s));
        let b = triple((c, s, c));
        let d = three([c, c, n]);
        let e = with_param((c, n));
        let f = nested(((c, n), s));
        let g = scale.map([1, 2], unmapped((c, s)));
        let h = pair((n, "constant part".to_owned()));
        a
    }
}

fn main() {}
