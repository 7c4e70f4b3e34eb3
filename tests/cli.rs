//! The CLI every flow program gets from `tideflow::cli::main()`, driven as a user drives
//! it: the example programs run as processes, their output and exit codes checked.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;

/// The example program `name`, built by cargo once per test binary (a no-op when it is up
/// to date: `cargo test` builds the examples before it runs the tests, `cargo test --test
/// cli` does not).
fn example(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.get_or_insert_with(HashSet::new).insert(name.to_owned()) {
        return path;
    }
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "--example", name]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example {name} failed");
    path
}

/// Runs the example `name` with `args` from the repository's root (where the examples'
/// default data paths point), logs off.
fn cli(name: &str, args: &[&str]) -> Output {
    Command::new(example(name))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "off")
        .env_remove("TIDEFLOW_WORKER")
        .output()
        .expect("the example runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 on stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("UTF-8 on stderr")
}

const TIPS_TABLE: &str = "\
passengers  mean tip
         1     $3.94
         2     $3.88
         3     $2.88
         4     $4.08
         5     $2.78
         6     $3.46
";

#[test]
fn with_no_subcommand_a_program_with_one_flow_runs_it() {
    let out = cli("nyc_taxi_tips", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("flow `nyc_taxi_tips` run "), "{text}");
    assert!(text.ends_with(TIPS_TABLE), "{text}");
    // The summary table, then the output: nothing else on stdout.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["task", "state", "attempts", "seconds"]
    );
    assert_eq!(lines.len(), 1 + 1 + 3 + TIPS_TABLE.lines().count(), "{text}");
}

#[test]
fn run_sets_parameters_by_name_and_prints_json() {
    let out = cli(
        "ticket_model_evaluation",
        &[
            "run",
            "ticket_model_evaluation",
            "--param",
            "batch_size=50",
            "-p",
            "trial_id=2",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(record["flow"], "ticket_model_evaluation");
    assert_eq!(record["state"], "Success");
    assert_eq!(record["error"], serde_json::Value::Null);
    assert_eq!(record["failed"], serde_json::json!([]));
    assert_eq!(record["output"]["trial_id"], 2);
    assert_eq!(record["output"]["count"], 50);
    assert_eq!(record["run_id"].as_str().map(str::len), Some(36));
}

#[test]
fn parameters_come_from_a_file_and_the_command_line_wins() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("params.json");
    std::fs::write(&file, r#"{"batch_size": 40, "trial_id": 5}"#).expect("written");
    let file = file.to_str().expect("a UTF-8 path");
    let out = cli(
        "ticket_model_evaluation",
        &["--params", file, "-p", "trial_id=6", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(record["output"]["count"], 40);
    assert_eq!(record["output"]["trial_id"], 6);

    std::fs::write(dir.path().join("bad.json"), "[1, 2]").expect("written");
    let bad = dir.path().join("bad.json");
    let out = cli(
        "ticket_model_evaluation",
        &["--params", bad.to_str().expect("UTF-8")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: the parameters file {} must hold a JSON object of parameter names to values, as {{\"n\": 3}}\n",
            bad.display()
        )
    );
}

#[test]
fn a_failed_run_exits_1_with_its_error() {
    let out = cli(
        "nyc_taxi_tips",
        &[
            "run",
            "nyc_taxi_tips",
            "--param",
            "path=examples/data/no_such_file.csv",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("flow `nyc_taxi_tips` run "), "{text}");
    assert!(text.lines().next().unwrap_or("").contains(": Failed: "), "{text}");
    assert_eq!(
        stderr(&out),
        "flow `nyc_taxi_tips` failed: `trips` (Failed: cannot read `examples/data/no_such_file.csv`: No such file \
         or directory (os error 2)); 2 downstream task runs did not run (TriggerFailed)\n"
    );
}

#[test]
fn list_shows_each_flow_with_its_parameters() {
    let out = cli("ticket_model_evaluation", &["list"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "\
ticket_model_evaluation  -> TrialSummary
    A baseline model of the time to close an IT incident, evaluated on one trial's batch.
    --param trial_id=<u64>  (default 1)
    --param batch_size=<usize>  (default 1000)
    --param path=<String>  (default \"examples/data/incident_event_log_sample.csv\")
"
    );
    let out = cli("nyc_taxi_tips", &["list", "--json"]);
    let all: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(
        all,
        serde_json::json!([{
            "name": "nyc_taxi_tips",
            "module": "nyc_taxi_tips",
            "description": "NYC taxi tips: the mean tip by number of passengers.",
            "parameters": [{"name": "path", "type": "String", "default": "examples/data/yellow_tripdata_sample.csv"}],
            "output": "TipsByPassengers",
            "tasks": 3,
        }])
    );
}

#[test]
fn graph_prints_mermaid_or_dot() {
    let out = cli("nyc_taxi_tips", &["graph", "nyc_taxi_tips"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("flowchart"), "{}", stdout(&out));
    let out = cli("nyc_taxi_tips", &["graph", "nyc_taxi_tips", "--format", "dot"]);
    assert!(
        stdout(&out).starts_with("digraph \"nyc_taxi_tips\" {"),
        "{}",
        stdout(&out)
    );
}

/// Each usage error: one line naming what was wrong, exit code 2, nothing run.
#[test]
fn usage_errors_exit_2_with_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "nope"],
            "error: no flow is named `nope`; this program's flows are: `ticket_model_evaluation`\n",
        ),
        (
            &["graph", "nope"],
            "error: no flow is named `nope`; this program's flows are: `ticket_model_evaluation`\n",
        ),
        (
            &["-p", "batch=5"],
            "error: flow `ticket_model_evaluation` has no parameter `batch`; its parameters are: `trial_id: u64`, \
             `batch_size: usize`, `path: String`\n",
        ),
        (
            &["-p", "batch_size=abc"],
            "error: `--param batch_size=abc`: parameter `batch_size` of flow `ticket_model_evaluation` expects a \
             `usize`: invalid type: string \"abc\", expected usize\n",
        ),
        (
            &["-p", "batch_size=-3"],
            "error: `--param batch_size=-3`: parameter `batch_size` of flow `ticket_model_evaluation` expects a \
             `usize`: invalid value: integer `-3`, expected usize\n",
        ),
        (
            &["-p", "batch_size"],
            "error: `--param batch_size`: a parameter is set as `name=value`, as in `--param batch_size=...`\n",
        ),
        (
            &["--executor", "threads"],
            "error: unknown executor `threads`: `local`, `sequential`, `dask://host:port` or `dask-local:N`\n",
        ),
        (
            &["--executor", "dask-local:x"],
            "error: `--executor dask-local:x`: `x` is not a number of workers (dask-local:2 starts a local cluster \
             of 2)\n",
        ),
        (
            &["--params", "no/such/file.json"],
            "error: cannot read the parameters file no/such/file.json: No such file or directory (os error 2)\n",
        ),
    ];
    for (args, expected) in cases {
        let out = cli("ticket_model_evaluation", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out), *expected, "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}: nothing ran");
    }
    // clap's own usage errors exit 2 as well.
    let out = cli("ticket_model_evaluation", &["--no-such-option"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli("ticket_model_evaluation", &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("Usage: ticket_model_evaluation [OPTIONS]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_sequential_executor_is_one_switch() {
    let out = cli("nyc_taxi_tips", &["--executor", "sequential"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).ends_with(TIPS_TABLE));
}
