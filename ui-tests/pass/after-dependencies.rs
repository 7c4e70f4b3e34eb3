use tideflow::prelude::*;

#[task]
fn setup() {}

#[task]
fn migrate() -> u64 {
    1
}

#[task]
fn load(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn report(xs: Vec<u64>) -> u64 {
    xs.len() as u64
}

flow! {
    /// `.after(..)` orders steps that pass no data.
    pub fn ordered(n: u64 = 3) -> u64 {
        let ready = setup();
        let m = migrate().after(ready);
        let xs = load(n).after(ready, m);
        let doubled = double.map(xs).after(m);
        report(doubled).after(ready)
    }

    /// An unbound step can wait, and be waited on.
    pub fn unbound_after() {
        let ready = setup();
        migrate().after(ready);
        let xs = load(2);
        report(double.map(xs)).after(ready, xs);
    }
}

fn main() {}
