use tideflow::prelude::*;

#[task]
fn tick(n: u64) -> u64 {
    n + 1
}

flow! {
    /// Ticks.
    #[schedule(evry = "1h")]
    fn ticking(n: u64 = 1) -> u64 {
        tick(n)
    }
}

fn main() {}
