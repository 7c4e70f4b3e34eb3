use tideflow::prelude::*;

#[task]
fn notify(text: String) {
    let _ = text;
}

#[task]
fn compute() -> u64 {
    1
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

flow! {
    /// Calls whose results nobody uses still run.
    pub fn side_effects() -> u64 {
        notify("start".to_owned());
        let x = compute();
        double(x);
        double.map([1, 2]);
        notify("start again".to_owned());
        compute();
        x
    }
}

fn main() {}
