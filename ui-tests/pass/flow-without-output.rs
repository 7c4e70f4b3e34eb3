use tideflow::prelude::*;

#[task]
fn ping(n: u64) {
    let _ = n;
}

flow! {
    pub fn fire_and_forget(n: u64 = 1) {
        ping(n);
    }

    pub fn empty() {}

    /// A unit-returning task as the last statement, without `;`.
    pub fn unit_tail(n: u64 = 2) {
        ping(n)
    }
}

fn main() {
    let _: Flow<()> = fire_and_forget();
    let _: Flow<()> = empty();
}
