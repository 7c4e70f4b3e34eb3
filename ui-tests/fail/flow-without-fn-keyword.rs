use tideflow::prelude::*;

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

// Without `fn`, the broken flow has no name a stub could take: only the error is
// reported, and the other flows of the block still expand.
flow! {
    pub broken(n: u64 = 2) -> u64 {
        double(n)
    }

    pub fn fine(n: u64 = 3) -> u64 {
        double(n)
    }
}

fn main() {
    let _: Flow<u64> = fine();
}
