//! The clock `serve` reads slots on: the system's, or one that follows tokio's time (which
//! tests pause and advance).

use std::time::Duration;

use jiff::Timestamp;

/// The time `serve` reads slots on.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Kind);

#[derive(Clone, Copy, Debug)]
enum Kind {
    System,
    Tokio {
        start: Timestamp,
        at: tokio::time::Instant,
    },
}

/// The longest `serve` sleeps on the system clock before it reads it again: the wall
/// clock may be set while it sleeps (NTP, a laptop waking up).
const WALL_NAP: Duration = Duration::from_secs(1);

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(Kind::System)
    }

    /// A clock at `start` now, that moves as tokio's time does from now on: with
    /// tokio's time paused (`#[tokio::test(start_paused = true)]`) a test sees ten
    /// seconds of slots pass at once. Must be made inside a tokio runtime.
    pub fn tokio(start: Timestamp) -> Clock {
        Clock(Kind::Tokio {
            start,
            at: tokio::time::Instant::now(),
        })
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        match self.0 {
            Kind::System => Timestamp::now(),
            Kind::Tokio { start, at } => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(at);
                jiff::SignedDuration::try_from(elapsed)
                    .ok()
                    .and_then(|d| start.checked_add(d).ok())
                    .unwrap_or(Timestamp::MAX)
            }
        }
    }

    /// Sleeps until `t` (or, on the system clock, for at most a second).
    pub(crate) async fn sleep_until(&self, t: Timestamp) {
        let left = Duration::try_from(t.duration_since(self.now())).unwrap_or(Duration::ZERO);
        let nap = match self.0 {
            Kind::System => left.min(WALL_NAP),
            Kind::Tokio { .. } => left,
        };
        tokio::time::sleep(nap).await;
    }
}

/// Seconds since the Unix epoch, as the history keeps times.
pub(crate) fn seconds(t: Timestamp) -> f64 {
    t.as_microsecond() as f64 / 1e6
}

/// The instant `seconds` after the Unix epoch (to the microsecond).
pub(crate) fn from_seconds(seconds: f64) -> Option<Timestamp> {
    Timestamp::from_microsecond((seconds * 1e6).round() as i64).ok()
}

/// `2026-11-29 02:00:00 UTC`, to the millisecond when it has some.
pub(crate) fn show(t: Timestamp) -> String {
    let millis = t.subsec_millisecond();
    if millis == 0 {
        format!("{} UTC", t.strftime("%Y-%m-%d %H:%M:%S"))
    } else {
        format!("{}.{millis:03} UTC", t.strftime("%Y-%m-%d %H:%M:%S"))
    }
}
