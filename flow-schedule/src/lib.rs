//! When a flow runs by itself: its schedules (intervals, cron expressions in a time zone),
//! each with its own parameter values, and what `serve` does with slots it missed or
//! cannot start at once ([`ServePolicy`]).
//!
//! A schedule has one text form, read by [`Schedule::parse`] and written by its `Display`
//! (the `flow!` attribute, the command line, a file and `list` all use it):
//!
//! ```text
//! every 24h                                   every day at 00:00 UTC
//! every 10m from 2026-01-01T06:05:00Z         06:05, 06:15, ... (UTC)
//! every 24h from 2026-03-01T06:00[Europe/Paris]   06:00 Paris time, across DST
//! cron 0 6 * * MON-FRI in Europe/Paris        06:00 Paris time on weekdays
//! cron */15 * * * * until 2027-01-01T00:00:00Z
//! ```
//!
//! - An interval's slots are its anchor (`from`, by default 2020-01-01 00:00 UTC) plus
//!   whole intervals: `every 1h` runs on the hour, `every 24h` at midnight UTC, whenever
//!   `serve` started. An anchor in the future is the first slot. An interval of whole days
//!   from an anchor with a time zone (`[Europe/Paris]`) steps in calendar days of that zone,
//!   so it keeps its local time across daylight saving changes; every other interval is
//!   a fixed number of seconds.
//! - A cron expression has 5 fields (minute hour day month weekday) or 6 (seconds first),
//!   with ranges, steps, names, `L`, `W`, `#` and nicknames (`@daily`), as
//!   [croner](https://docs.rs/croner) reads them; day of month and day of week match
//!   when either does (as Vixie cron). Its time zone is `UTC` unless `in` names an IANA
//!   zone. Across daylight saving changes it does what cron users expect: a job at a
//!   fixed time that falls in the hour skipped in spring runs right after the gap, and
//!   once (not twice) in the hour repeated in autumn; a job every few minutes or hours
//!   skips the gap and runs in both halves of the repeated hour.
//! - `until` ends a schedule: no slot after it.

#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Zoned;

/// An instant (jiff's), as slots are.
pub use jiff::Timestamp;

/// The anchor of intervals without `from`: 2020-01-01 00:00:00 UTC (as Prefect's).
const DEFAULT_ANCHOR_SECONDS: i64 = 1_577_836_800;

/// What is wrong with a schedule's text, and how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed schedule `{text}`: {reason}")]
pub struct ScheduleError {
    /// The text as given.
    pub text: String,
    /// What is wrong, with the form expected.
    pub reason: String,
}

impl ScheduleError {
    fn new(text: &str, reason: impl Into<String>) -> Self {
        ScheduleError {
            text: text.trim().to_owned(),
            reason: reason.into(),
        }
    }
}

/// The forms a schedule takes, for error messages.
const FORMS: &str = "write `every 24h`, `every 1h from 2026-01-01T06:00:00Z`, `cron 0 6 * * *` or \
                     `cron 0 6 * * * in Europe/Paris`, optionally ending with `until <time>`";

/// When a flow runs by itself: an interval or a cron expression, maybe ending.
#[derive(Clone, Debug)]
pub struct Schedule {
    kind: Kind,
    until: Option<Timestamp>,
}

#[derive(Clone, Debug)]
enum Kind {
    Every {
        every: Duration,
        from: Anchor,
    },
    Cron {
        /// As written (trimmed, spaces collapsed).
        expr: String,
        cron: Box<croner::Cron>,
        zone: TimeZone,
        /// The zone's IANA name, `UTC` by default.
        zone_name: String,
    },
}

#[derive(Clone, Debug)]
enum Anchor {
    /// No `from`: the default anchor.
    Default,
    /// `from` an instant (`Z` or an offset).
    At(Timestamp),
    /// `from` a time in a zone (`[Europe/Paris]`): whole-day intervals step in its days.
    Zoned(Zoned),
}

impl Anchor {
    fn instant(&self) -> Timestamp {
        match self {
            Anchor::Default => {
                Timestamp::from_second(DEFAULT_ANCHOR_SECONDS).unwrap_or(Timestamp::UNIX_EPOCH)
            }
            Anchor::At(t) => *t,
            Anchor::Zoned(z) => z.timestamp(),
        }
    }
}

impl Schedule {
    /// Reads a schedule's text form (see the crate's documentation).
    ///
    /// # Errors
    /// A [`ScheduleError`] naming what is wrong: an unknown form, a malformed duration,
    /// cron expression, time or time zone, a cron expression that never matches, an
    /// interval of zero, an `until` before `from`.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let err = |reason: String| ScheduleError::new(text, reason);
        let Some((&first, rest)) = words.split_first() else {
            return Err(err(format!("it is empty; {FORMS}")));
        };
        // `until <time>` ends any schedule.
        let (rest, until) = match rest.iter().position(|w| *w == "until") {
            Some(i) => {
                let time = rest[i + 1..].join(" ");
                if time.is_empty() {
                    return Err(err(
                        "`until` needs a time, as `until 2027-01-01T00:00:00Z`".to_owned()
                    ));
                }
                (
                    &rest[..i],
                    Some(parse_time(&time).map_err(|r| err(format!("`until {time}`: {r}")))?),
                )
            }
            None => (rest, None),
        };
        let kind = match first {
            "every" => {
                let (dur, from) = match rest.iter().position(|w| *w == "from") {
                    Some(i) => (&rest[..i], Some(rest[i + 1..].join(" "))),
                    None => (rest, None),
                };
                let dur = dur.join(" ");
                if dur.is_empty() {
                    return Err(err(
                        "`every` needs an interval, as `every 24h` or `every 10m`".to_owned()
                    ));
                }
                let every = parse_duration(&dur).map_err(err)?;
                let from = match from {
                    None => Anchor::Default,
                    Some(t) if t.is_empty() => {
                        return Err(err(
                            "`from` needs a time, as `from 2026-01-01T06:00:00Z`".to_owned()
                        ))
                    }
                    Some(t) => parse_anchor(&t).map_err(|r| err(format!("`from {t}`: {r}")))?,
                };
                if let (Some(until), false) = (until, matches!(from, Anchor::Default)) {
                    if until < from.instant() {
                        return Err(err("`until` is before `from`: no slot would run".to_owned()));
                    }
                }
                Kind::Every { every, from }
            }
            "cron" => {
                let (expr, zone) = match rest.iter().position(|w| *w == "in") {
                    Some(i) => (&rest[..i], Some(rest[i + 1..].join(" "))),
                    None => (rest, None),
                };
                let expr = expr.join(" ");
                if expr.is_empty() {
                    return Err(err(
                        "`cron` needs an expression of 5 fields (minute hour day month weekday), as `cron 0 6 * * *`"
                            .to_owned(),
                    ));
                }
                let cron = parse_cron(&expr).map_err(err)?;
                let (zone, zone_name) = match zone {
                    None => (TimeZone::UTC, "UTC".to_owned()),
                    Some(name) => (parse_zone(&name).map_err(err)?, name),
                };
                // A pattern that never matches (`0 0 30 2 *`) is an error now, not a
                // `serve` that never runs it.
                let probe = Timestamp::from_second(DEFAULT_ANCHOR_SECONDS)
                    .unwrap_or(Timestamp::UNIX_EPOCH)
                    .to_zoned(zone.clone());
                if cron.find_next_occurrence(&probe, false).is_err() {
                    return Err(err(format!("`{expr}` never matches a time")));
                }
                Kind::Cron {
                    expr,
                    cron: Box::new(cron),
                    zone,
                    zone_name,
                }
            }
            other => {
                return Err(err(format!(
                    "it starts with `{other}`, not `every` or `cron`; {FORMS}"
                )))
            }
        };
        Ok(Schedule { kind, until })
    }

    /// Runs every `every`, on the default anchor (2020-01-01 00:00 UTC).
    ///
    /// # Errors
    /// An interval of zero.
    pub fn every(every: Duration) -> Result<Schedule, ScheduleError> {
        if every.is_zero() {
            return Err(ScheduleError::new("every 0s", "an interval of zero never ends"));
        }
        Ok(Schedule {
            kind: Kind::Every {
                every,
                from: Anchor::Default,
            },
            until: None,
        })
    }

    /// The first slot after `t` (strictly), if the schedule has one.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.next(t, false)
    }

    /// The first slot at or after `t`, if the schedule has one.
    pub fn next_from(&self, t: Timestamp) -> Option<Timestamp> {
        self.next(t, true)
    }

    /// The latest slot at or before `t`, if the schedule had one.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let t = match self.until {
            Some(until) if until < t => until,
            _ => t,
        };
        match &self.kind {
            Kind::Every { every, from } => {
                let anchor = from.instant();
                if t < anchor {
                    return None;
                }
                match from {
                    Anchor::Zoned(z) if whole_days(*every).is_some() => {
                        let days = whole_days(*every)?;
                        let mut k = ((t.as_second() - anchor.as_second()) / 86_400) / days;
                        loop {
                            let slot = add_days(z, k * days)?;
                            if slot <= t {
                                return Some(slot);
                            }
                            if k == 0 {
                                return None;
                            }
                            k -= 1;
                        }
                    }
                    _ => {
                        let step = every.as_nanos();
                        let since = (t.as_nanosecond() - anchor.as_nanosecond()) as u128;
                        add_nanos(anchor, since / step * step)
                    }
                }
            }
            Kind::Cron { cron, zone, .. } => cron
                .find_previous_occurrence(&t.to_zoned(zone.clone()), true)
                .ok()
                .map(|z| z.timestamp()),
        }
    }

    /// The next `n` slots after `t`.
    pub fn upcoming(&self, t: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    fn next(&self, t: Timestamp, inclusive: bool) -> Option<Timestamp> {
        let slot = match &self.kind {
            Kind::Every { every, from } => {
                let anchor = from.instant();
                if t < anchor || (inclusive && t == anchor) {
                    Some(anchor)
                } else {
                    match from {
                        Anchor::Zoned(z) if whole_days(*every).is_some() => {
                            let days = whole_days(*every)?;
                            let mut k = ((t.as_second() - anchor.as_second()) / 86_400) / days;
                            loop {
                                let slot = add_days(z, k * days)?;
                                if slot > t || (inclusive && slot == t) {
                                    break Some(slot);
                                }
                                k += 1;
                            }
                        }
                        _ => {
                            let step = every.as_nanos();
                            let since = (t.as_nanosecond() - anchor.as_nanosecond()) as u128;
                            let k = since / step;
                            let at = k * step;
                            let at = if at == since && inclusive { at } else { at + step };
                            add_nanos(anchor, at)
                        }
                    }
                }
            }
            Kind::Cron { cron, zone, .. } => cron
                .find_next_occurrence(&t.to_zoned(zone.clone()), inclusive)
                .ok()
                .map(|z| z.timestamp()),
        }?;
        match self.until {
            Some(until) if slot > until => None,
            _ => Some(slot),
        }
    }
}

fn whole_days(every: Duration) -> Option<i64> {
    (every.subsec_nanos() == 0 && every.as_secs().is_multiple_of(86_400))
        .then(|| i64::try_from(every.as_secs() / 86_400).ok())
        .flatten()
}

fn add_days(z: &Zoned, days: i64) -> Option<Timestamp> {
    z.checked_add(jiff::Span::new().try_days(days).ok()?)
        .ok()
        .map(|z| z.timestamp())
}

fn add_nanos(t: Timestamp, nanos: u128) -> Option<Timestamp> {
    let nanos = i128::try_from(nanos).ok()?;
    Timestamp::from_nanosecond(t.as_nanosecond().checked_add(nanos)?).ok()
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Every { every, from } => {
                write!(f, "every {}", format_duration(*every))?;
                match from {
                    Anchor::Default => {}
                    Anchor::At(t) => write!(f, " from {t}")?,
                    Anchor::Zoned(z) => write!(f, " from {z}")?,
                }
            }
            Kind::Cron { expr, zone_name, .. } => {
                write!(f, "cron {expr}")?;
                if zone_name != "UTC" {
                    write!(f, " in {zone_name}")?;
                }
            }
        }
        if let Some(until) = self.until {
            write!(f, " until {until}")?;
        }
        Ok(())
    }
}

/// A duration as `24h`, `1h30m`, `10s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let mut out = String::new();
    let secs = d.as_secs();
    let (h, m, s, ms) = (secs / 3600, secs / 60 % 60, secs % 60, d.subsec_millis());
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (u64::from(ms), "ms")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str(&format!("{}ns", d.subsec_nanos()));
    }
    out
}

/// A duration such as `24h`, `1h30m`, `10s` or `500ms`.
///
/// # Errors
/// What is wrong, with the forms expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        // humantime lists its units after the reason; the forms below say it shorter.
        let e = e.to_string();
        let reason = e.split(", supported units").next().unwrap_or(&e);
        format!("`{text}` is not a duration ({reason}): write it like `24h`, `1h30m`, `10s` or `500ms`")
    })?;
    if d.is_zero() {
        return Err(format!(
            "`{text}` is an interval of zero: write one such as `10s` or `24h`"
        ));
    }
    Ok(d)
}

/// A cron expression of 5 fields, or 6 with seconds first.
fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "`{expr}` has {fields} fields; a cron expression has 5 (minute hour day month weekday, as `0 6 * * *`) \
             or 6 (seconds first)"
        ));
    }
    let parse = |text: &str| {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(text)
    };
    parse(expr).map_err(|e| {
        // Name the field at fault: each one alone, the others `*`.
        let given: Vec<&str> = expr.split_whitespace().collect();
        let names: &[(&str, &str)] = if given.len() == 6 {
            &[
                ("second", "0-59"),
                ("minute", "0-59"),
                ("hour", "0-23"),
                ("day of month", "1-31"),
                ("month", "1-12 or JAN-DEC"),
                ("day of week", "0-7 or SUN-SAT"),
            ]
        } else {
            &[
                ("minute", "0-59"),
                ("hour", "0-23"),
                ("day of month", "1-31"),
                ("month", "1-12 or JAN-DEC"),
                ("day of week", "0-7 or SUN-SAT"),
            ]
        };
        let field = (names.len() == given.len())
            .then(|| {
                (0..given.len()).find(|&i| {
                    let alone: Vec<&str> = (0..given.len())
                        .map(|j| if j == i { given[i] } else { "*" })
                        .collect();
                    parse(&alone.join(" ")).is_err()
                })
            })
            .flatten();
        match field {
            Some(i) => format!(
                "`{expr}` is not a cron expression: its {} field `{}` is not one ({}; {})",
                names[i].0,
                given[i],
                lower_first(cron_reason(&e).trim_start_matches("CronPattern ")),
                names[i].1
            ),
            None => format!("`{expr}` is not a cron expression: {}", cron_reason(&e)),
        }
    })
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

fn cron_reason(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError;
    match e {
        CronError::InvalidPattern(m) | CronError::IllegalCharacters(m) | CronError::ComponentError(m) => {
            m.trim_end_matches('.').to_owned()
        }
        other => other.to_string().trim_end_matches('.').to_owned(),
    }
}

/// An IANA time zone name (`Europe/Paris`, `UTC`).
///
/// # Errors
/// An unknown name, with examples.
pub fn parse_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name.trim()).map_err(|_| {
        format!(
            "`{name}` is not a time zone of the IANA database: write one such as `UTC`, `Europe/Paris` or \
             `America/New_York`"
        )
    })
}

/// An instant: `2026-01-01T06:00:00Z`, `2026-01-01T06:00:00+01:00`, or a time in a zone
/// `2026-01-01T06:00[Europe/Paris]`.
///
/// # Errors
/// What is wrong, with the forms expected.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    parse_anchor(text).map(|a| a.instant())
}

fn parse_anchor(text: &str) -> Result<Anchor, String> {
    let text = text.trim();
    if text.ends_with(']') {
        return text.parse::<Zoned>().map(Anchor::Zoned).map_err(|e| {
            format!("not a time in a zone ({e}): write it like `2026-01-01T06:00[Europe/Paris]`")
        });
    }
    text.parse::<Timestamp>().map(Anchor::At).map_err(|e| {
        format!(
            "not a time ({e}): write it like `2026-01-01T06:00:00Z`, with an offset (`+01:00`), or in a zone \
             (`2026-01-01T06:00[Europe/Paris]`)"
        )
    })
}

/// A schedule of a flow with the parameter values its runs get (the flow's defaults for
/// the others).
#[derive(Clone, Debug)]
pub struct ScheduledRun {
    /// When.
    pub schedule: Schedule,
    /// Parameter values by name, as JSON.
    pub params: Vec<(String, serde_json::Value)>,
}

impl ScheduledRun {
    /// The schedule, with the flow's default parameters.
    pub fn new(schedule: Schedule) -> Self {
        ScheduledRun {
            schedule,
            params: Vec::new(),
        }
    }

    /// Runs get `value` for the parameter `name`.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.params.push((name.into(), value));
        self
    }

    /// What tells this schedule from the flow's others in the run history: its text and
    /// its parameters (`every 1h {"n":3}`). A changed schedule is a new one.
    pub fn key(&self) -> String {
        if self.params.is_empty() {
            return self.schedule.to_string();
        }
        let params: serde_json::Map<String, serde_json::Value> = self.params.iter().cloned().collect();
        format!("{} {}", self.schedule, serde_json::Value::Object(params))
    }
}

impl fmt::Display for ScheduledRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// What `serve` does with the slots that passed while it was not running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Missed {
    /// Runs none of them: the next run is the next slot (the default).
    #[default]
    Skip,
    /// Runs the latest one, at once.
    Latest,
    /// Runs every one of them, oldest first.
    All,
}

impl Missed {
    const NAMES: &'static [(Missed, &'static str)] = &[
        (Missed::Skip, "skip"),
        (Missed::Latest, "latest"),
        (Missed::All, "all"),
    ];
}

impl FromStr for Missed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(Missed::NAMES, "a policy for missed runs", s)
    }
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(Missed::NAMES, *self))
    }
}

/// What `serve` does with a due run while the flow already has its most runs running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenBusy {
    /// The run waits for one to end (the default).
    #[default]
    Wait,
    /// The run is recorded as `Skipped` and does not run.
    Skip,
}

impl WhenBusy {
    const NAMES: &'static [(WhenBusy, &'static str)] = &[(WhenBusy::Wait, "wait"), (WhenBusy::Skip, "skip")];
}

impl FromStr for WhenBusy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(WhenBusy::NAMES, "a policy for busy flows", s)
    }
}

impl fmt::Display for WhenBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(WhenBusy::NAMES, *self))
    }
}

/// The value named `text` in `names`, or what it is not (`what`) and the names to write.
fn by_name<T: Copy>(names: &[(T, &str)], what: &str, text: &str) -> Result<T, String> {
    if let Some((value, _)) = names.iter().find(|(_, name)| *name == text) {
        return Ok(*value);
    }
    let quoted: Vec<String> = names.iter().map(|(_, name)| format!("`{name}`")).collect();
    let choices = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(format!("`{text}` is not {what}: write {choices}"))
}

/// The name of `value` in `names`.
fn name_of<T: Copy + PartialEq>(names: &[(T, &'static str)], value: T) -> &'static str {
    names
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("", |(_, name)| name)
}

/// How `serve` runs a flow's scheduled runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServePolicy {
    /// Slots missed while `serve` was not running.
    pub missed: Missed,
    /// At most this many runs of the flow at once (`None`: no limit, the default).
    pub max_running: Option<usize>,
    /// A due run while `max_running` runs are running.
    pub when_busy: WhenBusy,
}

#[cfg(test)]
mod tests;
