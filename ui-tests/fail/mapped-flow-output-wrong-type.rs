use tideflow::prelude::*;

#[task]
fn double(x: f64) -> f64 {
    x * 2.0
}

flow! {
    pub fn doubled() -> f64 {
        let ds = double.map(vec![1.0, 2.0]);
        ds
    }
}

fn main() {}
