use tideflow::prelude::*;

#[task]
fn labels() -> Vec<String> {
    vec!["a".into()]
}

#[task]
fn total(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

flow! {
    fn f() -> u64 {
        let l = labels();
        total(l)
    }
}

fn main() {}
