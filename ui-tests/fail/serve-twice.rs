use tideflow::prelude::*;

#[task]
fn tick(n: u64) -> u64 {
    n + 1
}

flow! {
    /// Ticks.
    #[schedule(every = "1h")]
    #[serve(missed = "all")]
    #[serve(max_running = 1)]
    fn ticking(n: u64 = 1) -> u64 {
        tick(n)
    }
}

fn main() {}
