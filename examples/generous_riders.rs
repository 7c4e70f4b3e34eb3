//! Most generous NYC taxi riders: the best tip ratio in every hour of trips.
//!
//! ```text
//! cargo run --release --example generous_riders                        # the sample data
//! cargo run --release --example generous_riders -- -p path=trips.csv    # a TLC yellow trips CSV
//! cargo run --release --example generous_riders -- -p seed=1            # the same failures every run
//! cargo run --release --example generous_riders -- graph generous_riders
//! cargo run --release --example generous_riders -- --executor dask-local:2
//! RUST_LOG=debug cargo run --release --example generous_riders         # more logs
//! ```
//!
//! With `SLACK_WEBHOOK_URL` set, each run's end (`Success` or `Failed`) is posted to that
//! Slack incoming webhook, as the seed pipeline did.
//!
//! `download` reads a CSV of yellow taxi trips (the TLC's column names and formats) and
//! splits it into one chunk per pickup hour; `clean` runs once per chunk, fails at random
//! one time in five (a flaky source) and is retried up to 5 times, 2 s apart; `best` finds
//! each chunk's most generous rider (tip / total) and logs it; `summarize` reduces the
//! mapped results into one `Summary`.
//!
//! The data file is a synthetic sample made by `examples/data/make_trips.py`; a real
//! month from the TLC (exported to CSV) works the same way, only with more chunks.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::{Deserialize, Serialize};
use tideflow::prelude::*;

/// One yellow taxi trip, as in the TLC trip record files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    /// 1 = Creative Mobile Technologies, 2 = VeriFone.
    #[serde(rename = "VendorID")]
    pub vendor_id: u8,
    /// `2023-01-01 00:32:10`, local time.
    pub tpep_pickup_datetime: String,
    pub tpep_dropoff_datetime: String,
    /// Entered by the driver; empty in some rows.
    pub passenger_count: Option<f64>,
    /// Miles.
    pub trip_distance: f64,
    /// 1 = standard, 2 = JFK, 3 = Newark, 4 = Nassau/Westchester, 5 = negotiated, 6 = group.
    #[serde(rename = "RatecodeID")]
    pub ratecode_id: Option<f64>,
    pub store_and_fwd_flag: Option<String>,
    /// TLC taxi zone of the pickup.
    #[serde(rename = "PULocationID")]
    pub pu_location_id: u32,
    /// TLC taxi zone of the drop-off.
    #[serde(rename = "DOLocationID")]
    pub do_location_id: u32,
    /// 1 = credit card, 2 = cash, 3 = no charge, 4 = dispute, 0 = unknown.
    pub payment_type: u8,
    pub fare_amount: f64,
    pub extra: f64,
    pub mta_tax: f64,
    /// Card tips only: cash tips are not recorded.
    pub tip_amount: f64,
    pub tolls_amount: f64,
    pub improvement_surcharge: f64,
    pub total_amount: f64,
    pub congestion_surcharge: Option<f64>,
    pub airport_fee: Option<f64>,
}

impl Trip {
    /// The share of the total that is tip.
    pub fn tip_ratio(&self) -> f64 {
        if self.total_amount > 0.0 {
            self.tip_amount / self.total_amount
        } else {
            0.0
        }
    }
}

/// The trips picked up in one hour of one day.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Chunk {
    /// `2023-01-01`.
    pub date: String,
    /// 0..=23.
    pub hour: u32,
    pub trips: Vec<Trip>,
}

impl Chunk {
    /// `2023-01-01 07h`, for messages.
    pub fn label(&self) -> String {
        format!("{} {:02}h", self.date, self.hour)
    }
}

/// What the flow returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Chunks that reached `best`.
    pub chunks: usize,
    /// Chunks with at least one tipped trip.
    pub chunks_with_tips: usize,
    /// The mean, over those chunks, of their best tip ratio.
    pub mean_best_ratio: f64,
    /// The most generous rider of all.
    pub best: Option<Trip>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} chunks, {} with a tipped trip; mean best tip ratio {:.1}%",
            self.chunks,
            self.chunks_with_tips,
            self.mean_best_ratio * 100.0
        )?;
        match &self.best {
            Some(t) => write!(
                f,
                "most generous rider: {:.1}% (${:.2} tip on ${:.2}), picked up {} in zone {}, \
                 {:.2} miles to zone {}",
                t.tip_ratio() * 100.0,
                t.tip_amount,
                t.total_amount,
                t.tpep_pickup_datetime,
                t.pu_location_id,
                t.trip_distance,
                t.do_location_id
            ),
            None => write!(f, "nobody tipped"),
        }
    }
}

/// Reads the trips and splits them into one chunk per (date, hour) of pickup.
#[task]
fn download(path: String) -> Result<Vec<Chunk>, TaskError> {
    let mut reader =
        csv::Reader::from_path(&path).map_err(|e| TaskError::fail(format!("cannot read `{path}`: {e}")))?;
    let mut chunks: BTreeMap<(String, u32), Vec<Trip>> = BTreeMap::new();
    for row in reader.deserialize() {
        let trip: Trip = row?;
        let (date, hour) = pickup_hour(&trip.tpep_pickup_datetime).ok_or_else(|| {
            TaskError::fail(format!(
                "`{path}`: pickup time `{}` is not `YYYY-MM-DD HH:MM:SS`",
                trip.tpep_pickup_datetime
            ))
        })?;
        chunks.entry((date, hour)).or_default().push(trip);
    }
    let trips: usize = chunks.values().map(Vec::len).sum();
    tracing::info!(
        "read {trips} trips from `{path}` in {} hourly chunks",
        chunks.len()
    );
    Ok(chunks
        .into_iter()
        .map(|((date, hour), trips)| Chunk { date, hour, trips })
        .collect())
}

/// `("2023-01-01", 0)` for `2023-01-01 00:32:10`.
fn pickup_hour(datetime: &str) -> Option<(String, u32)> {
    let (date, time) = datetime.split_once(' ')?;
    let hour: u32 = time.get(..2)?.parse().ok()?;
    let well_formed = date.len() == 10 && date.as_bytes()[4] == b'-' && hour < 24;
    well_formed.then(|| (date.to_owned(), hour))
}

/// Drops refunds, zero-total trips and rows with no passenger count. The source is flaky:
/// one load in five fails, and the task is retried.
#[task(max_retries = 5, retry_delay = "2s")]
fn clean(chunk: Chunk, ctx: &TaskContext) -> Result<Chunk, TaskError> {
    let seed = ctx.param::<Option<u64>>("seed").flatten();
    if flaky_roll(&chunk, ctx.attempt(), seed) < 0.2 {
        return Err(TaskError::fail(format!(
            "flaky source: chunk {} failed to load",
            chunk.label()
        )));
    }
    let before = chunk.trips.len();
    let trips: Vec<Trip> = chunk
        .trips
        .into_iter()
        .filter(|t| t.total_amount > 0.0 && t.passenger_count.is_some())
        .collect();
    tracing::debug!(
        "chunk {} {:02}h: kept {} of {before} trips",
        chunk.date,
        chunk.hour,
        trips.len()
    );
    Ok(Chunk { trips, ..chunk })
}

/// A number in `0..1` for this load of this chunk: random, or fixed by the `seed`
/// parameter (the same loads fail on every run).
fn flaky_roll(chunk: &Chunk, attempt: u32, seed: Option<u64>) -> f64 {
    match seed {
        None => fastrand::f64(),
        Some(seed) => {
            let mut key = DefaultHasher::new();
            (seed, &chunk.date, chunk.hour, attempt).hash(&mut key);
            fastrand::Rng::with_seed(key.finish()).f64()
        }
    }
}

/// The chunk's most generous rider (best tip / total), if anyone tipped.
#[task]
fn best(chunk: &Chunk) -> Option<Trip> {
    let top = chunk
        .trips
        .iter()
        .filter(|t| t.tip_amount > 0.0)
        .max_by(|a, b| a.tip_ratio().total_cmp(&b.tip_ratio()))?;
    tracing::info!(
        "{}: best tip {:.1}% (${:.2} on ${:.2}), zone {} -> {}",
        chunk.label(),
        top.tip_ratio() * 100.0,
        top.tip_amount,
        top.total_amount,
        top.pu_location_id,
        top.do_location_id
    );
    Some(top.clone())
}

/// One summary out of every chunk's best rider.
#[task]
fn summarize(best: Vec<Option<Trip>>) -> Summary {
    let tipped: Vec<&Trip> = best.iter().flatten().collect();
    let mean_best_ratio = if tipped.is_empty() {
        0.0
    } else {
        tipped.iter().map(|t| t.tip_ratio()).sum::<f64>() / tipped.len() as f64
    };
    let top = tipped
        .iter()
        .max_by(|a, b| a.tip_ratio().total_cmp(&b.tip_ratio()))
        .map(|t| (*t).clone());
    let summary = Summary {
        chunks: best.len(),
        chunks_with_tips: tipped.len(),
        mean_best_ratio,
        best: top,
    };
    tracing::info!(
        "{} chunks, {} with a tipped trip; best tip ratio {:.1}% overall, {:.1}% on average",
        summary.chunks,
        summary.chunks_with_tips,
        summary.best.as_ref().map_or(0.0, Trip::tip_ratio) * 100.0,
        summary.mean_best_ratio * 100.0
    );
    summary
}

flow! {
    /// Most generous NYC taxi riders: the best tip ratio in every hour of trips.
    pub fn generous_riders(
        path: String = "examples/data/yellow_tripdata_sample.csv".into(),
        seed: Option<u64> = None,
    ) -> Summary {
        let chunks = download(path);
        let cleaned = clean.map(chunks);
        let best = best.map(cleaned);
        summarize(best)
    }
}

/// The CLI every flow program gets (`run`, `list`, `graph`, `runs`, `show`, `logs`,
/// `restart`), with Slack told of each run's end when `SLACK_WEBHOOK_URL` is set.
fn main() -> std::process::ExitCode {
    tideflow::cli::Cli::new()
        .prepare("generous_riders", tell_slack)
        .after_help(SLACK_HELP)
        .main()
}

/// The flow, posting each run's end to Slack when `SLACK_WEBHOOK_URL` is set.
pub fn tell_slack(flow: tideflow::DynFlow) -> tideflow::DynFlow {
    match SlackNotifier::from_secret("SLACK_WEBHOOK_URL") {
        Ok(slack) => flow.on_flow_state(slack.only_states([StateKind::Success, StateKind::Failed])),
        Err(_) => flow,
    }
}

/// What `--help` says of the environment.
pub const SLACK_HELP: &str =
    "Environment:\n  SLACK_WEBHOOK_URL  post each run's Success or Failed to this Slack incoming webhook";
