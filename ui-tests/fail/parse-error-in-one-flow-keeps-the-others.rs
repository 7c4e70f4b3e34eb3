use tideflow::prelude::*;

mod flows {
    use tideflow::prelude::*;

    #[task]
    pub fn double(x: u64) -> u64 {
        x * 2
    }

    // A syntax error in one flow is reported alone: the other flows of the block still
    // expand, and a stub stands in for the broken one, so the code below that uses both
    // adds no "cannot find function" of its own.
    flow! {
        pub fn broken(n u64 = 2) -> u64 {
            double(n)
        }

        pub fn fine(n: u64 = 3) -> u64 {
            double(n)
        }
    }
}

use flows::*;

fn main() {
    let _: Flow<u64> = broken();
    let _: Flow<u64> = fine();
}
