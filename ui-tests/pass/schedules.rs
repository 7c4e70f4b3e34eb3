use tideflow::prelude::*;
use tideflow::schedule::{Missed, WhenBusy};

#[task]
fn tick(n: u64, label: String) -> u64 {
    n + label.len() as u64
}

flow! {
    /// Every form of schedule a flow can declare, each with its own parameters.
    #[schedule(every = "24h")]
    #[schedule(every = "10m", from = "2026-01-01T06:05:00Z", until = "2027-01-01T00:00:00Z")]
    #[schedule(every = "24h", from = "2026-03-27T06:00[Europe/Paris]")]
    #[schedule(cron = "0 6 * * MON-FRI", timezone = "Europe/Paris", params(n = 500, label = "weekday".into()))]
    #[schedule(cron = "*/15 * * * *", params(n = 2))]
    #[serve(missed = "latest", max_running = 2, when_busy = "skip")]
    pub fn scheduled(n: u64 = 1, label: String = "tick".into()) -> u64 {
        tick(n, label)
    }

    /// A required parameter, given by its schedule.
    #[schedule(every = "1h", params(n = 3))]
    fn required(n: u64) -> u64 {
        tick(n, "x".into())
    }
}

fn main() {
    let flow = scheduled();
    let texts: Vec<String> = flow.schedules().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        texts,
        [
            "every 24h",
            "every 10m from 2026-01-01T06:05:00Z until 2027-01-01T00:00:00Z",
            "every 24h from 2026-03-27T06:00:00+01:00[Europe/Paris]",
            "cron 0 6 * * MON-FRI in Europe/Paris {\"label\":\"weekday\",\"n\":500}",
            "cron */15 * * * * {\"n\":2}",
        ]
    );
    assert_eq!(flow.policy().missed, Missed::Latest);
    assert_eq!(flow.policy().max_running, Some(2));
    assert_eq!(flow.policy().when_busy, WhenBusy::Skip);
    assert_eq!(required().schedules().len(), 1);
}
