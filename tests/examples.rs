//! The example pipelines, run on their shipped data (`examples/data/`) and checked against
//! computations written here independently of the examples' code.
//!
//! Each example file is compiled into this test as a module, so its flow is called as a
//! function; its `main` is not used here.

use std::collections::{BTreeMap, HashMap};

#[allow(dead_code)]
#[path = "../examples/nyc_taxi_tips.rs"]
mod nyc_taxi_tips;

#[allow(dead_code)]
#[path = "../examples/ticket_model_evaluation.rs"]
mod ticket_model_evaluation;

mod common;

use ticket_model_evaluation::{Ticket, TrialSummary};

/// What each Dask worker runs when a test below uses a Dask cluster.
#[test]
fn tideflow_worker() {
    tideflow::worker::serve_if_worker();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticket_pipeline_gives_the_same_summary_on_a_dask_cluster() {
    let Some(python) = common::python() else {
        return;
    };
    let local = ticket_model_evaluation::ticket_model_evaluation().run().await;
    let on_dask = ticket_model_evaluation::ticket_model_evaluation()
        .executor(tideflow::dask::DaskExecutor::local(2).python(python))
        .run()
        .await;
    let expected: &TrialSummary = local.output().expect("the pipeline succeeds locally");
    assert_eq!(on_dask.output(), Ok(expected), "{}", on_dask.summary());
    assert!(on_dask.tasks().iter().all(|t| t.state().is_success()));
}

const TRIPS: &str = "examples/data/yellow_tripdata_sample.csv";
const INCIDENTS: &str = "examples/data/incident_event_log_sample.csv";

/// The CSV at `path` as a header and rows of fields (neither sample quotes a field).
fn read_csv(path: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>());
    let header = lines.next().unwrap();
    let rows: Vec<Vec<String>> = lines.collect();
    assert!(
        rows.iter().all(|r| r.len() == header.len()),
        "{path}: ragged rows"
    );
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap()
}

/// Equal up to float rounding from summing in another order.
fn assert_close(actual: f64, expected: f64, what: &str) {
    let scale = actual.abs().max(expected.abs()).max(1.0);
    assert!(
        (actual - expected).abs() <= 1e-9 * scale,
        "{what}: {actual} != {expected}"
    );
}

// ---------------------------------------------------------------------------------------
// nyc_taxi_tips

/// Mean tip by passenger count, 0 dropped, rounded to cents, straight from the CSV text.
fn expected_mean_tips() -> BTreeMap<u8, f64> {
    let (header, rows) = read_csv(TRIPS);
    let (passengers, tip) = (column(&header, "passenger_count"), column(&header, "tip_amount"));
    let mut groups: BTreeMap<u8, Vec<f64>> = BTreeMap::new();
    for row in &rows {
        if row[passengers].is_empty() {
            continue;
        }
        let count: f64 = row[passengers].parse().unwrap();
        groups
            .entry(count as u8)
            .or_default()
            .push(row[tip].parse().unwrap());
    }
    groups
        .into_iter()
        .filter(|(count, _)| *count != 0)
        .map(|(count, tips)| {
            let mean = tips.iter().sum::<f64>() / tips.len() as f64;
            (count, (mean * 100.0).round() / 100.0)
        })
        .collect()
}

#[tokio::test]
async fn nyc_taxi_tips_gives_the_mean_tip_by_passenger_count() {
    // `transform` persists its result: into a store of this test's, not the user's.
    let store = tempfile::tempdir().expect("a folder");
    let run = nyc_taxi_tips::nyc_taxi_tips()
        .keep_results()
        .result_store(tideflow::ResultStore::local(store.path()))
        .run()
        .await;
    assert!(run.state().is_success(), "{}", run.summary());
    let means = run.output().unwrap();
    assert_eq!(means, &expected_mean_tips());
    // The shipped sample, pinned: regenerating it differently shows up here.
    let pinned: BTreeMap<u8, f64> = [(1, 3.94), (2, 3.88), (3, 2.88), (4, 4.08), (5, 2.78), (6, 3.46)]
        .into_iter()
        .collect();
    assert_eq!(means, &pinned);
    // Every trip was read, including the 31 with no passenger count.
    let trips = run.task("trips").result::<Vec<nyc_taxi_tips::Trip>>().unwrap();
    assert_eq!(trips.len(), 975);
    assert_eq!(trips.iter().filter(|t| t.passenger_count.is_none()).count(), 31);
    // `transform` still has the 0-passenger group, unrounded; `clean` drops it.
    let unrounded = run.task("means").result::<BTreeMap<u8, f64>>().unwrap();
    assert_eq!(
        unrounded.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 6]
    );
    assert_close(unrounded[&0], 75.56 / 27.0, "mean tip of 0 passengers");
}

#[tokio::test]
async fn nyc_taxi_tips_fails_on_a_missing_file() {
    let store = tempfile::tempdir().expect("a folder");
    let run = nyc_taxi_tips::nyc_taxi_tips()
        .result_store(tideflow::ResultStore::local(store.path()))
        .with_param("path", "examples/data/no_such_file.csv")
        .unwrap()
        .run()
        .await;
    assert!(run.state().is_failed());
    assert!(run.task("trips").state().is_failed());
    assert!(run.task("means").state().is_trigger_failed());
    assert!(run.task("clean").state().is_trigger_failed());
    // The failed task first, with its error; then the tasks that could not run.
    let failed = run.failed_tasks();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert_eq!(failed[0].0, "trips");
    assert!(
        failed[0]
            .1
            .contains("cannot read `examples/data/no_such_file.csv`"),
        "{failed:?}"
    );
    assert!(run.output().is_err());
}

// ---------------------------------------------------------------------------------------
// ticket_model_evaluation

/// Minutes since 1970-01-01 00:00 for `24/2/2016 01:15`, counted day by day.
fn minutes(stamp: &str) -> i64 {
    let (date, time) = stamp.split_once(' ').unwrap();
    let dmy: Vec<i64> = date.split('/').map(|x| x.parse().unwrap()).collect();
    let hm: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    let (day, month, year) = (dmy[0], dmy[1], dmy[2]);
    let leap = |y: i64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let mut month_lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if leap(year) {
        month_lengths[1] = 29;
    }
    assert!(day >= 1 && day <= month_lengths[month as usize - 1], "{stamp}");
    let days: i64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum::<i64>()
        + month_lengths[..month as usize - 1].iter().sum::<i64>()
        + (day - 1);
    (days * 24 + hm[0]) * 60 + hm[1]
}

/// One eligible row, as this test reads it: (number, target seconds, predicted seconds).
type Row = (String, f64, f64);

/// The rows of the shipped event log that have both dates.
fn eligible_rows() -> Vec<Row> {
    let (header, rows) = read_csv(INCIDENTS);
    assert_eq!(header, ticket_model_evaluation::COLUMNS);
    let number = column(&header, "number");
    let priority = column(&header, "priority");
    let updated = column(&header, "sys_updated_at");
    let closed = column(&header, "closed_at");
    rows.iter()
        .filter(|r| r[updated] != "?" && r[closed] != "?")
        .map(|r| {
            let target = (minutes(&r[closed]) - minutes(&r[updated])) as f64 * 60.0;
            let hours = match r[priority].as_str() {
                "1 - Critical" => 6.0,
                "2 - High" => 24.0,
                "3 - Moderate" => 120.0,
                "4 - Low" => 240.0,
                "?" => 180.0,
                other => panic!("priority {other}"),
            };
            (r[number].clone(), target, hours * 3600.0)
        })
        .collect()
}

fn sorted(mut xs: Vec<f64>) -> Vec<f64> {
    xs.sort_by(f64::total_cmp);
    xs
}

fn median_of(xs: &[f64]) -> f64 {
    let xs = sorted(xs.to_vec());
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The summary a trial over these rows must report, computed here.
fn expected_summary(trial_id: u64, rows: &[Row]) -> TrialSummary {
    let n = rows.len() as f64;
    let y: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let abs_err: Vec<f64> = rows.iter().map(|r| (r.1 - r.2).abs()).collect();
    let mean = y.iter().sum::<f64>() / n;
    let ss_res: f64 = rows.iter().map(|r| (r.1 - r.2).powi(2)).sum();
    let ss_tot: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let y_sorted = sorted(y.clone());
    TrialSummary {
        trial_id,
        count: rows.len(),
        mae: abs_err.iter().sum::<f64>() / n,
        medae: median_of(&abs_err),
        mse: ss_res / n,
        r2: 1.0 - ss_res / ss_tot,
        target_mean: mean,
        target_median: median_of(&y),
        target_min: y_sorted[0],
        target_max: *y_sorted.last().unwrap(),
    }
}

fn assert_summary(actual: &TrialSummary, expected: &TrialSummary) {
    assert_eq!(actual.trial_id, expected.trial_id);
    assert_eq!(actual.count, expected.count);
    assert_close(actual.mae, expected.mae, "MAE");
    assert_close(actual.mse, expected.mse, "MSE");
    assert_close(actual.r2, expected.r2, "R²");
    assert_close(actual.target_mean, expected.target_mean, "target mean");
    // Order statistics do not depend on the summing order: exact.
    assert_eq!(actual.medae, expected.medae, "MedAE");
    assert_eq!(actual.target_median, expected.target_median, "target median");
    assert_eq!(actual.target_min, expected.target_min, "target min");
    assert_eq!(actual.target_max, expected.target_max, "target max");
}

#[test]
fn the_shipped_event_log_has_the_uci_shape() {
    let (_, rows) = read_csv(INCIDENTS);
    assert_eq!(rows.len(), 2533);
    assert_eq!(eligible_rows().len(), 2421);
    let numbers: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(numbers.len(), 440);
}

#[test]
fn dates_parse_as_day_month_year() {
    use ticket_model_evaluation::parse_datetime;
    for stamp in [
        "24/2/2016 01:15",
        "29/2/2016 23:59",
        "1/1/1970 00:00",
        "31/12/2016 7:05",
        "05/03/2016 12:00",
    ] {
        assert_eq!(parse_datetime(stamp), Some(minutes(stamp) * 60), "{stamp}");
    }
    for bad in [
        "?",
        "",
        "2016-02-24 01:15",
        "30/2/2016 00:00",
        "24/13/2016 01:15",
        "24/2/2016",
        "24/2/2016 24:00",
    ] {
        assert_eq!(parse_datetime(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn a_batch_of_every_eligible_row_matches_an_independent_evaluation() {
    let rows = eligible_rows();
    let run = ticket_model_evaluation::ticket_model_evaluation()
        .with_param("batch_size", rows.len())
        .unwrap()
        .with_param("trial_id", 3)
        .unwrap()
        .run()
        .await;
    assert!(run.state().is_success(), "{}", run.summary());
    let summary = run.output().unwrap();
    assert_summary(summary, &expected_summary(3, &rows));
    assert_eq!(summary.count, 2421);
}

#[tokio::test]
async fn the_default_trial_evaluates_its_sample() {
    let run = ticket_model_evaluation::ticket_model_evaluation()
        .keep_results()
        .run()
        .await;
    assert!(run.state().is_success(), "{}", run.summary());
    let summary = run.output().unwrap();
    assert_eq!(summary.trial_id, 1);
    assert_eq!(summary.count, 1000);

    // The batch: 1000 distinct eligible rows of the log.
    let tickets = run.task("tickets").result::<Vec<Ticket>>().unwrap();
    assert_eq!(tickets.len(), 1000);
    let mut available: HashMap<(String, i64, i64), usize> = HashMap::new();
    for (number, target, predicted) in eligible_rows() {
        *available
            .entry((number, target as i64, predicted as i64))
            .or_default() += 1;
    }
    let mut batch = Vec::new();
    for t in tickets {
        let target = (t.closed_at - t.sys_updated_at) as f64;
        let predicted = ticket_model_evaluation::predicted_hours(t.priority) * 3600.0;
        let left = available
            .get_mut(&(t.number.clone(), target as i64, predicted as i64))
            .unwrap_or_else(|| panic!("{t:?} is not an eligible row"));
        assert!(*left > 0, "{t:?} sampled more often than it occurs");
        *left -= 1;
        batch.push((t.number.clone(), target, predicted));
    }

    // The metrics and the target's distribution, computed here from the batch.
    assert_summary(summary, &expected_summary(1, &batch));
    for (name, metric) in [
        ("mae", summary.mae),
        ("medae", summary.medae),
        ("mse", summary.mse),
        ("r2", summary.r2),
    ] {
        assert_eq!(run.task(name).result::<f64>(), Some(&metric), "{name}");
    }

    // The logged line is the summary as JSON.
    let json = run.task("log_summary").result::<String>().unwrap();
    let logged: TrialSummary = serde_json::from_str(json).unwrap();
    assert_eq!(&logged, summary);
}

#[tokio::test]
async fn a_trial_is_reproducible_and_trials_differ() {
    let trial = |id: u64| async move {
        let run = ticket_model_evaluation::ticket_model_evaluation()
            .with_param("trial_id", id)
            .unwrap()
            .with_param("batch_size", 200)
            .unwrap()
            .keep_results()
            .run()
            .await;
        let tickets = run.task("tickets").result::<Vec<Ticket>>().unwrap().clone();
        (run.into_output().unwrap(), tickets)
    };
    let (first, first_batch) = trial(7).await;
    let (again, again_batch) = trial(7).await;
    let (other, other_batch) = trial(8).await;
    assert_eq!(first.count, 200);
    assert_eq!(first, again);
    assert_eq!(first_batch, again_batch);
    assert_ne!(first_batch, other_batch);
    assert_ne!(first.mae, other.mae);
}

#[tokio::test]
async fn a_batch_larger_than_the_log_fails_the_sample() {
    let run = ticket_model_evaluation::ticket_model_evaluation()
        .with_param("batch_size", 100_000)
        .unwrap()
        .run()
        .await;
    assert!(run.state().is_failed());
    assert!(run.task("tickets").state().is_failed());
    for name in [
        "target",
        "prediction",
        "mae",
        "medae",
        "mse",
        "r2",
        "summary",
        "log_summary",
    ] {
        assert!(
            run.task(name).state().is_trigger_failed(),
            "{name}: {:?}",
            run.task(name).state()
        );
    }
    let failed = run.failed_tasks();
    assert_eq!(failed.len(), 9, "{failed:?}");
    assert_eq!(failed[0].0, "tickets");
    assert!(
        failed[0].1.contains("only 2421 rows with both dates"),
        "{failed:?}"
    );
}
