//! Most generous NYC taxi riders: the best tip ratio in every hour of trips.
//!
//! ```text
//! cargo run --release --example generous_riders                 # the sample data
//! cargo run --release --example generous_riders -- trips.csv    # a TLC yellow trips CSV
//! cargo run --release --example generous_riders -- --graph      # print the DAG (Mermaid)
//! RUST_LOG=debug cargo run --release --example generous_riders  # more logs
//! ```
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
use std::io::IsTerminal;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tideflow::dask::DaskExecutor;
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
    if flaky_roll(&chunk, ctx.attempt()) < 0.2 {
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

/// `--seed N`: the flaky source fails the same loads on every run. Worker processes on a
/// local Dask cluster read it from the environment the coordinator passes on.
static SEED: OnceLock<u64> = OnceLock::new();

/// The variable `--seed` sets for worker processes.
const SEED_VAR: &str = "GENEROUS_RIDERS_SEED";

/// A number in `0..1` for this load of this chunk: random, or fixed by `--seed`.
fn flaky_roll(chunk: &Chunk, attempt: u32) -> f64 {
    let seed = SEED
        .get()
        .copied()
        .or_else(|| std::env::var(SEED_VAR).ok()?.parse().ok());
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
    pub fn generous_riders(path: String = "examples/data/yellow_tripdata_sample.csv".into()) -> Summary {
        let chunks = download(path);
        let cleaned = clean.map(chunks);
        let best = best.map(cleaned);
        summarize(best)
    }
}

const USAGE: &str = "\
usage: generous_riders [--graph] [--fast] [--seed N] [--dask ADDR | --dask-local N] [TRIPS.csv]

  TRIPS.csv        a TLC yellow taxi trips CSV (default: examples/data/yellow_tripdata_sample.csv)
  --graph          print the flow's graph (Mermaid) and exit
  --fast           retry `clean` after 50 ms instead of 2 s (a per-flow task option override)
  --seed N         make the flaky source fail the same loads on every run
  --dask ADDR      run the tasks on the Dask scheduler at ADDR (tcp://host:port)
  --dask-local N   run the tasks on a local Dask cluster of N workers
  RUST_LOG         log filter (default: info)";

#[tokio::main]
async fn main() -> Result<(), FlowError> {
    // Started as a worker by a cluster executor, this program serves task attempts instead.
    tideflow::worker::serve_if_worker();
    // Logs go to stderr (colored on a terminal); the run's summary and output to stdout.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let mut graph = false;
    let mut fast = false;
    let mut path = None;
    let mut dask: Option<DaskExecutor> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--graph" => graph = true,
            "--fast" => fast = true,
            "--seed" => match args.next().and_then(|n| n.parse::<u64>().ok()) {
                Some(n) => {
                    let _ = SEED.set(n);
                }
                None => {
                    eprintln!("--seed takes a whole number\n{USAGE}");
                    std::process::exit(2);
                }
            },
            "--dask" => match args.next().map(|a| DaskExecutor::connect(&a)) {
                Some(Ok(executor)) => dask = Some(executor),
                Some(Err(e)) => {
                    eprintln!("{e}\n{USAGE}");
                    std::process::exit(2);
                }
                None => {
                    eprintln!("--dask takes a scheduler address\n{USAGE}");
                    std::process::exit(2);
                }
            },
            "--dask-local" => match args.next().and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => dask = Some(DaskExecutor::local(n)),
                None => {
                    eprintln!("--dask-local takes a number of workers\n{USAGE}");
                    std::process::exit(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            flag if flag.starts_with('-') => {
                eprintln!("unknown option `{flag}`\n{USAGE}");
                std::process::exit(2);
            }
            _ if path.is_none() => path = Some(arg),
            _ => {
                eprintln!("one CSV path at most\n{USAGE}");
                std::process::exit(2);
            }
        }
    }

    let mut flow = generous_riders();
    if let Some(path) = path {
        flow = flow.with_param("path", path)?;
    }
    if fast {
        flow = flow.with_task_options("cleaned", |o| o.retry_delay = Duration::from_millis(50))?;
    }
    if graph {
        // Written, not printed: a reader that stops early (`| head`) is not an error.
        let _ = writeln!(std::io::stdout().lock(), "{}", flow.to_mermaid());
        return Ok(());
    }
    if let Some(executor) = dask {
        if let Some(seed) = SEED.get() {
            // Before the cluster starts, so that its worker processes inherit it.
            std::env::set_var(SEED_VAR, seed.to_string());
        }
        flow = flow.executor(executor);
    }

    let run = flow.run().await;
    println!("{}", run.summary());
    match run.output() {
        Ok(summary) => {
            println!("{summary}");
            Ok(())
        }
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}
