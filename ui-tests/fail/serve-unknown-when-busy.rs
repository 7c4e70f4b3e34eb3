use tideflow::prelude::*;

#[task]
fn tick(n: u64) -> u64 {
    n + 1
}

flow! {
    /// Ticks.
    #[schedule(every = "1h")]
    #[serve(max_running = 1, when_busy = "queue")]
    fn ticking(n: u64 = 1) -> u64 {
        tick(n)
    }
}

fn main() {}
