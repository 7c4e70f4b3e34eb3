//! NYC taxi tips: the mean tip by number of passengers.
//!
//! ```text
//! cargo run --example nyc_taxi_tips                              # the sample data
//! cargo run --example nyc_taxi_tips -- --param path=trips.csv     # a TLC yellow trips CSV
//! cargo run --example nyc_taxi_tips -- graph nyc_taxi_tips        # the DAG (Mermaid)
//! cargo run --example nyc_taxi_tips -- --help                     # the rest of the CLI
//! ```
//!
//! `read_trips` reads a CSV of yellow taxi trips (the TLC's column names and formats);
//! `transform` groups the trips by passenger count and takes the mean tip of each group
//! (trips with no passenger count are left out, as a pandas `groupby` would); `clean`
//! drops the trips recorded with 0 passengers and rounds the means to cents.
//!
//! The data file is a synthetic sample made by `examples/data/make_trips.py`; a real
//! month from the TLC (exported to CSV) works the same way.

use std::collections::BTreeMap;
use std::fmt;

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
    /// Entered by the driver, written as a float (`1.0`); empty in some rows.
    pub passenger_count: Option<f64>,
    /// Miles.
    pub trip_distance: f64,
    #[serde(rename = "RatecodeID")]
    pub ratecode_id: Option<f64>,
    pub store_and_fwd_flag: Option<String>,
    #[serde(rename = "PULocationID")]
    pub pu_location_id: u32,
    #[serde(rename = "DOLocationID")]
    pub do_location_id: u32,
    /// 1 = credit card, 2 = cash, 3 = no charge, 4 = dispute, 0 = unknown.
    pub payment_type: u8,
    pub fare_amount: f64,
    pub extra: f64,
    pub mta_tax: f64,
    /// Card tips only: cash tips are not recorded. Negative in refunds.
    pub tip_amount: f64,
    pub tolls_amount: f64,
    pub improvement_surcharge: f64,
    pub total_amount: f64,
    pub congestion_surcharge: Option<f64>,
    pub airport_fee: Option<f64>,
}

/// Mean tip (dollars) by passenger count.
pub type MeanTips = BTreeMap<u8, f64>;

/// Reads the trips.
#[task]
fn read_trips(path: String) -> Result<Vec<Trip>, TaskError> {
    let mut reader =
        csv::Reader::from_path(&path).map_err(|e| TaskError::fail(format!("cannot read `{path}`: {e}")))?;
    let trips = reader.deserialize().collect::<Result<Vec<Trip>, _>>()?;
    tracing::info!("read {} trips from `{path}`", trips.len());
    Ok(trips)
}

/// The mean tip of the trips with each passenger count. Persisted: `restart` of a run
/// that got this far does not compute it again.
#[task(persist)]
#[allow(clippy::ptr_arg)] // a task reads an upstream `Vec<T>` without a clone as `&Vec<T>`
fn transform(trips: &Vec<Trip>) -> Result<MeanTips, TaskError> {
    let mut groups: BTreeMap<u8, (f64, usize)> = BTreeMap::new();
    let mut unknown = 0;
    for trip in trips {
        let Some(count) = trip.passenger_count else {
            unknown += 1;
            continue;
        };
        if count.fract() != 0.0 || !(0.0..=255.0).contains(&count) {
            return Err(TaskError::fail(format!(
                "trip picked up {}: passenger count {count} is not a whole number of passengers",
                trip.tpep_pickup_datetime
            )));
        }
        let (sum, n) = groups.entry(count as u8).or_default();
        *sum += trip.tip_amount;
        *n += 1;
    }
    for (count, (sum, n)) in &groups {
        tracing::info!("{count} passenger(s): {n} trips, ${sum:.2} of tips");
    }
    tracing::info!(
        "{} trips in {} groups; {unknown} with no passenger count left out",
        trips.len() - unknown,
        groups.len()
    );
    Ok(groups
        .into_iter()
        .map(|(count, (sum, n))| (count, sum / n as f64))
        .collect())
}

/// The flow's output: the mean tip in dollars by number of passengers, shown as a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TipsByPassengers(pub BTreeMap<u8, f64>);

impl PartialEq<MeanTips> for TipsByPassengers {
    fn eq(&self, other: &MeanTips) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for TipsByPassengers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "passengers  mean tip")?;
        for (count, mean) in &self.0 {
            writeln!(f, "{count:>10}  {:>8}", format!("${mean:.2}"))?;
        }
        Ok(())
    }
}

/// Drops the trips recorded with 0 passengers and rounds to cents.
#[task]
fn clean(means: MeanTips) -> TipsByPassengers {
    if let Some(mean) = means.get(&0) {
        tracing::info!("dropped passenger count 0 (mean tip ${mean:.4})");
    }
    TipsByPassengers(
        means
            .into_iter()
            .filter(|&(count, _)| count != 0)
            .map(|(count, mean)| (count, round_to_cents(mean)))
            .collect(),
    )
}

/// `3.1449..` → `3.14`.
pub fn round_to_cents(dollars: f64) -> f64 {
    (dollars * 100.0).round() / 100.0
}

flow! {
    /// NYC taxi tips: the mean tip by number of passengers.
    pub fn nyc_taxi_tips(path: String = "examples/data/yellow_tripdata_sample.csv".into()) -> TipsByPassengers {
        let trips = read_trips(path);
        let means = transform(trips);
        clean(means)
    }
}

/// `run`, `list`, `graph` and `--help`: the CLI every flow program gets from one line.
fn main() -> std::process::ExitCode {
    tideflow::cli::main()
}
