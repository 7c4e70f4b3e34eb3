use tideflow::prelude::*;

#[task]
fn square_sum(n: u64) -> u64 {
    (1..=n).map(|i| i * i).sum()
}

#[task]
fn names() -> Vec<String> {
    vec!["a".into()]
}

flow! {
    pub fn squares(n: u64 = 3) -> u64 {
        square_sum(n)
    }
}

flow! {
    pub fn outer() -> u64 {
        let labels = names();
        squares(labels)
    }
}

fn main() {}
