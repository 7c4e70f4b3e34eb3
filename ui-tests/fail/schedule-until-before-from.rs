use tideflow::prelude::*;

#[task]
fn tick(n: u64) -> u64 {
    n + 1
}

flow! {
    /// Ticks.
    #[schedule(every = "1h", from = "2026-02-01T00:00:00Z", until = "2026-01-01T00:00:00Z")]
    fn ticking(n: u64 = 1) -> u64 {
        tick(n)
    }
}

fn main() {}
