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
fn pair(p: (u64, u64)) -> u64 {
    p.0 + p.1
}

flow! {
    pub fn paired() -> u64 {
        let c = count();
        let s = name();
        pair((c, s))
    }
}

fn main() {}
