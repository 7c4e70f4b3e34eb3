//! Evaluates a baseline model of how long an IT incident stays open, on a batch of tickets.
//!
//! ```text
//! cargo run --example ticket_model_evaluation                        # trial 1, 1000 tickets
//! cargo run --example ticket_model_evaluation -- -p trial_id=7 -p batch_size=500
//! cargo run --example ticket_model_evaluation -- -p path=events.csv  # another event log
//! cargo run --example ticket_model_evaluation -- --executor dask-local:2
//! cargo run --example ticket_model_evaluation -- graph ticket_model_evaluation
//! cargo run --example ticket_model_evaluation -- --help              # the rest of the CLI
//! ```
//!
//! `sample_tickets` reads an incident management event log (the columns of the UCI
//! "Incident management process enriched event log", `?` for a missing value, dates as
//! `%d/%m/%Y %H:%M`) and draws `batch_size` of its rows that have both a `sys_updated_at`
//! and a `closed_at`, at random but seeded by the trial id, so a trial is reproducible.
//! `target` is the time each ticket still had to go: `closed_at − sys_updated_at`, in
//! seconds. `predict` is the baseline model, which only looks at the priority:
//! 6 h for `1 - Critical`, 24 h for `2 - High`, 120 h for `3 - Moderate`, 240 h for
//! `4 - Low`, 180 h when the priority is missing. One task, `evaluate_model`, computes
//! the MAE, the median absolute error, the MSE and R² in four calls; `trial_summary`
//! gathers them with the target's distribution and `log_summary` logs it as JSON.
//!
//! The data file is a synthetic sample made by `examples/data/make_incidents.py`; the real
//! event log (141,712 rows) works the same way.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use tideflow::prelude::*;

/// The columns of the UCI incident event log, in order.
pub const COLUMNS: [&str; 36] = [
    "number",
    "incident_state",
    "active",
    "reassignment_count",
    "reopen_count",
    "sys_mod_count",
    "made_sla",
    "caller_id",
    "opened_by",
    "opened_at",
    "sys_created_by",
    "sys_created_at",
    "sys_updated_by",
    "sys_updated_at",
    "contact_type",
    "location",
    "category",
    "subcategory",
    "u_symptom",
    "cmdb_ci",
    "impact",
    "urgency",
    "priority",
    "assignment_group",
    "assigned_to",
    "knowledge",
    "u_priority_confirmation",
    "notify",
    "problem_id",
    "rfc",
    "vendor",
    "caused_by",
    "closed_code",
    "resolved_by",
    "resolved_at",
    "closed_at",
];

/// One row of the event log: one update of an incident. Only the columns the model
/// uses; `?` (a missing value) reads as `None`.
#[derive(Debug, Deserialize)]
struct Event {
    /// `INC0000045`.
    number: String,
    /// `New`, `Active`, `Awaiting User Info`, `Resolved`, `Closed`, ...
    incident_state: String,
    /// `3 - Moderate`.
    #[serde(deserialize_with = "missing")]
    priority: Option<String>,
    /// When this update was made: `24/2/2016 01:15`.
    #[serde(deserialize_with = "missing")]
    sys_updated_at: Option<String>,
    /// When the incident was closed (the same on each of its rows).
    #[serde(deserialize_with = "missing")]
    closed_at: Option<String>,
}

/// `?` (or an empty field) is a missing value.
fn missing<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(deserializer)?;
    Ok(match value.trim() {
        "" | "?" => None,
        _ => Some(value),
    })
}

/// An incident's priority, from ServiceNow's impact × urgency matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Priority {
    Critical,
    High,
    Moderate,
    Low,
}

impl Priority {
    /// `1 - Critical`, `2 - High`, `3 - Moderate`, `4 - Low`.
    pub fn parse(value: &str) -> Option<Priority> {
        match value.trim() {
            "1 - Critical" => Some(Priority::Critical),
            "2 - High" => Some(Priority::High),
            "3 - Moderate" => Some(Priority::Moderate),
            "4 - Low" => Some(Priority::Low),
            _ => None,
        }
    }
}

/// One sampled row: a ticket as it was at one update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub number: String,
    pub incident_state: String,
    /// `None` where the log has `?`.
    pub priority: Option<Priority>,
    /// Seconds since 1970-01-01 00:00 (the log's local time).
    pub sys_updated_at: i64,
    pub closed_at: i64,
}

/// Seconds since 1970-01-01 00:00 for `24/2/2016 01:15` (`%d/%m/%Y %H:%M`; the day, month
/// and hour may have one digit or two).
pub fn parse_datetime(value: &str) -> Option<i64> {
    let (date, time) = value.trim().split_once(' ')?;
    let mut date = date.split('/');
    let (day, month, year) = (date.next()?, date.next()?, date.next()?);
    let (hour, minute) = time.split_once(':')?;
    let digits = |s: &str, max_len: usize| -> Option<i64> {
        if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (day, month, year) = (digits(day, 2)?, digits(month, 2)?, digits(year, 4)?);
    let (hour, minute) = (digits(hour, 2)?, digits(minute, 2)?);
    if date.next().is_some() || year < 1000 || minute > 59 || hour > 23 {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Reads the event log at `path` and parses the rows that have both dates into tickets.
pub fn read_tickets(path: &str) -> Result<Vec<Ticket>, TaskError> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| TaskError::fail(format!("cannot read `{path}`: {e}")))?;
    let headers = reader.headers()?.clone();
    if let Some(column) = COLUMNS.iter().find(|c| !headers.iter().any(|h| h == **c)) {
        return Err(TaskError::fail(format!(
            "`{path}` is not an incident event log: no `{column}` column"
        )));
    }
    let date = |value: &str, column: &str, line: usize| {
        parse_datetime(value).ok_or_else(|| {
            TaskError::fail(format!(
                "`{path}` line {line}: {column} `{value}` is not a `%d/%m/%Y %H:%M` date"
            ))
        })
    };
    let mut tickets = Vec::new();
    let mut rows = 0;
    for (i, row) in reader.deserialize().enumerate() {
        let event: Event = row?;
        let line = i + 2;
        rows += 1;
        let priority =
            match &event.priority {
                None => None,
                Some(p) => Some(Priority::parse(p).ok_or_else(|| {
                    TaskError::fail(format!("`{path}` line {line}: unknown priority `{p}`"))
                })?),
            };
        let (Some(updated), Some(closed)) = (&event.sys_updated_at, &event.closed_at) else {
            continue;
        };
        tickets.push(Ticket {
            sys_updated_at: date(updated, "sys_updated_at", line)?,
            closed_at: date(closed, "closed_at", line)?,
            number: event.number,
            incident_state: event.incident_state,
            priority,
        });
    }
    tracing::info!(
        "read {rows} events from `{path}`: {} with both sys_updated_at and closed_at",
        tickets.len()
    );
    Ok(tickets)
}

/// A batch of `batch_size` tickets drawn without replacement from the event log, the
/// same batch for the same trial id.
#[task]
fn sample_tickets(path: String, trial_id: u64, batch_size: usize) -> Result<Vec<Ticket>, TaskError> {
    let mut tickets = read_tickets(&path)?;
    if batch_size > tickets.len() {
        return Err(TaskError::fail(format!(
            "a batch of {batch_size} tickets, but `{path}` has only {} rows with both dates",
            tickets.len()
        )));
    }
    // A partial Fisher-Yates shuffle: the first `batch_size` places get a uniform sample.
    let mut rng = fastrand::Rng::with_seed(trial_id);
    for i in 0..batch_size {
        let j = rng.usize(i..tickets.len());
        tickets.swap(i, j);
    }
    tickets.truncate(batch_size);
    tracing::info!("trial {trial_id}: sampled {batch_size} tickets");
    Ok(tickets)
}

/// Seconds from each ticket's update until its incident was closed.
#[task]
#[allow(clippy::ptr_arg)] // a task reads an upstream `Vec<T>` without a clone as `&Vec<T>`
fn target(tickets: &Vec<Ticket>) -> Vec<f64> {
    tickets
        .iter()
        .map(|t| (t.closed_at - t.sys_updated_at) as f64)
        .collect()
}

/// The baseline: hours to closing by priority, in seconds.
#[task]
#[allow(clippy::ptr_arg)]
fn predict(tickets: &Vec<Ticket>) -> Vec<f64> {
    tickets
        .iter()
        .map(|t| predicted_hours(t.priority) * 3_600.0)
        .collect()
}

/// 6 h, 24 h, 120 h, 240 h by priority; 180 h when it is missing.
pub fn predicted_hours(priority: Option<Priority>) -> f64 {
    match priority {
        Some(Priority::Critical) => 6.0,
        Some(Priority::High) => 24.0,
        Some(Priority::Moderate) => 120.0,
        Some(Priority::Low) => 240.0,
        None => 180.0,
    }
}

/// A regression metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    /// Mean absolute error (seconds).
    Mae,
    /// Median absolute error (seconds).
    MedAe,
    /// Mean squared error (seconds²).
    Mse,
    /// Coefficient of determination: 1 − SSres / SStot.
    R2,
}

/// One metric of the prediction against the target.
#[task]
#[allow(clippy::ptr_arg)]
fn evaluate_model(metric: Metric, target: &Vec<f64>, prediction: &Vec<f64>) -> Result<f64, TaskError> {
    if target.len() != prediction.len() {
        return Err(TaskError::fail(format!(
            "{} targets but {} predictions",
            target.len(),
            prediction.len()
        )));
    }
    if target.is_empty() {
        return Err(TaskError::fail(format!("{metric:?} of an empty batch")));
    }
    let n = target.len() as f64;
    let errors = target.iter().zip(prediction).map(|(y, p)| y - p);
    let value = match metric {
        Metric::Mae => errors.map(f64::abs).sum::<f64>() / n,
        Metric::MedAe => median(errors.map(f64::abs).collect()),
        Metric::Mse => errors.map(|e| e * e).sum::<f64>() / n,
        Metric::R2 => {
            let mean = target.iter().sum::<f64>() / n;
            let ss_tot: f64 = target.iter().map(|y| (y - mean) * (y - mean)).sum();
            if ss_tot == 0.0 {
                return Err(TaskError::fail("R² of a constant target is undefined"));
            }
            1.0 - errors.map(|e| e * e).sum::<f64>() / ss_tot
        }
    };
    tracing::info!("{metric:?} = {value:.4}");
    Ok(value)
}

/// The median of a non-empty list (the mean of the middle two for an even length).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len().is_multiple_of(2) {
        (xs[mid - 1] + xs[mid]) / 2.0
    } else {
        xs[mid]
    }
}

/// What a trial measured; times in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialSummary {
    pub trial_id: u64,
    /// Tickets in the batch.
    pub count: usize,
    pub mae: f64,
    pub medae: f64,
    pub mse: f64,
    pub r2: f64,
    pub target_mean: f64,
    pub target_median: f64,
    pub target_min: f64,
    pub target_max: f64,
}

impl fmt::Display for TrialSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = |s: f64| s / 3_600.0;
        writeln!(
            f,
            "trial {}: {} tickets, time to closing {:.1} h on average (median {:.1} h, {:.1} h to {:.1} h)",
            self.trial_id,
            self.count,
            h(self.target_mean),
            h(self.target_median),
            h(self.target_min),
            h(self.target_max)
        )?;
        write!(
            f,
            "baseline by priority: MAE {:.1} h, MedAE {:.1} h, RMSE {:.1} h, R² {:.3}",
            h(self.mae),
            h(self.medae),
            h(self.mse.sqrt()),
            self.r2
        )
    }
}

/// The trial's metrics with the target's distribution.
#[task]
#[allow(clippy::ptr_arg)]
fn trial_summary(trial_id: u64, mae: f64, medae: f64, mse: f64, r2: f64, target: &Vec<f64>) -> TrialSummary {
    let count = target.len();
    TrialSummary {
        trial_id,
        count,
        mae,
        medae,
        mse,
        r2,
        target_mean: target.iter().sum::<f64>() / count as f64,
        target_median: median(target.clone()),
        target_min: target.iter().copied().fold(f64::INFINITY, f64::min),
        target_max: target.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Logs the summary as one line of JSON, and returns that line.
#[task]
fn log_summary(summary: &TrialSummary) -> Result<String, TaskError> {
    let json = serde_json::to_string(summary)?;
    tracing::info!("trial summary: {json}");
    Ok(json)
}

flow! {
    /// A baseline model of the time to close an IT incident, evaluated on one trial's batch.
    #[schedule(every = "24h")]
    pub fn ticket_model_evaluation(
        trial_id: u64 = 1,
        batch_size: usize = 1000,
        path: String = "examples/data/incident_event_log_sample.csv".into(),
    ) -> TrialSummary {
        let tickets = sample_tickets(path, trial_id, batch_size);
        let target = target(tickets);
        let prediction = predict(tickets);
        let mae = evaluate_model(Metric::Mae, target, prediction);
        let medae = evaluate_model(Metric::MedAe, target, prediction);
        let mse = evaluate_model(Metric::Mse, target, prediction);
        let r2 = evaluate_model(Metric::R2, target, prediction);
        let summary = trial_summary(trial_id, mae, medae, mse, r2, target);
        log_summary(summary);
        summary
    }
}

/// `run` (with `--param trial_id=7`, `--executor dask-local:2`...), `list`, `graph` and
/// `--help`: the CLI every flow program gets from one line.
fn main() -> std::process::ExitCode {
    tideflow::cli::main()
}
