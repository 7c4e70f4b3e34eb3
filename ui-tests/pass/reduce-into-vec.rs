use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
fn total_ref(xs: &Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
fn both(a: Vec<u64>, label: String) -> String {
    format!("{label}: {a:?}")
}

flow! {
    /// A mapped result passed to a task whose parameter is `Vec<T>` collects all children.
    pub fn reduced() -> String {
        let doubled = double.map([1, 2, 3]);
        let t = total(doubled);
        let r = total_ref(doubled);
        both(doubled, "all".to_owned())
    }

    /// A flow returning a mapped result outputs every child's value.
    pub fn all_doubled() -> Vec<u64> {
        let doubled = double.map(vec![1, 2, 3]);
        doubled
    }
}

fn main() {}
