use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

// The stub of a flow that does not parse is still a task of other flows: calling it,
// mapping it, even with the wrong number of arguments, reports nothing more.
flow! {
    pub fn broken(n: u64 = 2 3) -> u64 {
        double(n)
    }
}

flow! {
    pub fn parent(n: u64 = 2) -> u64 {
        let x = broken(n);
        let xs = numbers(x);
        let ys = broken.map(xs);
        let z = broken(x, x);
        double(z)
    }
}

fn main() {
    let _: Flow<u64> = parent();
}
