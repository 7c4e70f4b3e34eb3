//! The CLI every flow program gets from `tideflow::cli::main()`, driven as a user drives
//! it: the example programs run as processes, their output and exit codes checked.

mod common;

use std::process::{Command, Output};

/// The run history these tests' runs go to (not the user's `~/.tideflow`).
fn home() -> &'static std::path::Path {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
        .path()
}

/// Runs the example `name` with `args` from the repository's root (where the examples'
/// default data paths point), logs off, its history in [`home`].
fn cli(name: &str, args: &[&str]) -> Output {
    cli_in(home(), name, args)
}

/// As [`cli`], with the history in `home`.
fn cli_in(home: &std::path::Path, name: &str, args: &[&str]) -> Output {
    Command::new(common::example(name))
        .args(args)
        .env("TIDEFLOW_HOME", home)
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
    let out = cli("ticket_model_evaluation", &["list", "--json"]);
    let all: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    let version = all[0]["version"].as_str().expect("a version").to_owned();
    assert_eq!(version.len(), 16, "{version}");
    // The next three midnights (UTC), as `every 24h` runs.
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 86_400;
    let midnights: Vec<String> = (1..=3)
        .map(|d| {
            let text = tideflow::history::format_time(((today + d) * 86_400) as f64);
            format!("{}Z", text.replace(' ', "T"))
        })
        .collect();
    assert_eq!(
        all[0]["schedules"],
        serde_json::json!([{ "schedule": "every 24h", "params": {}, "next": midnights }])
    );
    let out = cli("ticket_model_evaluation", &["list"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!(
            "\
ticket_model_evaluation  -> TrialSummary  (version {version})
    A baseline model of the time to close an IT incident, evaluated on one trial's batch.
    --param trial_id=<u64>  (default 1)
    --param batch_size=<usize>  (default 1000)
    --param path=<String>  (default \"examples/data/incident_event_log_sample.csv\")
    schedule: every 24h  (next {})
",
            midnights.join(", ")
        )
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
            "version": all[0]["version"],
            "schedules": [],
            "serve": { "missed": "skip", "max_running": null, "when_busy": "wait" },
        }])
    );
}

/// The seeds' scheduled pipeline under `serve`, on a 1-second interval instead of its
/// 24 hours: each slot runs once, recorded with its time, and logs its trial's summary.
#[test]
fn ticket_model_evaluation_runs_under_serve() {
    let home = tempfile::tempdir().expect("a folder");
    let child = Command::new(common::example("ticket_model_evaluation"))
        .args([
            "serve",
            "--schedule",
            "ticket_model_evaluation=every 1s",
            "--bind",
            "127.0.0.1:0",
        ])
        .env("TIDEFLOW_HOME", home.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TIDEFLOW_WORKER")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts");
    let runs = |home: &std::path::Path| -> Vec<serde_json::Value> {
        let out = cli_in(home, "ticket_model_evaluation", &["runs", "--json"]);
        serde_json::from_str(stdout(&out).trim()).unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while runs(home.path())
        .iter()
        .filter(|r| r["state"] == "Success")
        .count()
        < 3
    {
        assert!(std::time::Instant::now() < deadline, "3 runs within a minute");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("serve ends");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("serving ticket_model_evaluation: every 1s (next "),
        "{err}"
    );
    assert!(err.contains("SIGTERM"), "{err}");
    let mut all = runs(home.path());
    all.reverse();
    assert!(all.len() >= 3, "{all:?}");
    let mut slots = Vec::new();
    for run in &all {
        assert_eq!(run["state"], "Success", "{run}");
        assert_eq!(run["trigger"], "schedule");
        assert_eq!(run["schedule"], "every 1s");
        assert_eq!(run["parameters"]["batch_size"], 1000);
        let slot = run["scheduled_for"].as_f64().expect("a slot");
        assert_eq!(slot.fract(), 0.0, "on the second");
        slots.push(slot);
    }
    for pair in slots.windows(2) {
        assert_eq!(pair[1] - pair[0], 1.0, "one run per second: {slots:?}");
    }
    assert!(
        err.contains(&format!("serve stopped after {0} run(s): {0} Success", all.len())),
        "{err}"
    );
    let id = all[0]["id"].as_str().expect("an id");
    let out = cli_in(
        home.path(),
        "ticket_model_evaluation",
        &["logs", id, "--task", "log_summary"],
    );
    assert!(
        stdout(&out).contains("log_summary: trial summary: {\"trial_id\":1,\"count\":1000,"),
        "{}",
        stdout(&out)
    );
    let out = cli_in(home.path(), "ticket_model_evaluation", &["show", id]);
    assert!(stdout(&out).contains("by `every 1s`"), "{}", stdout(&out));
    // Under serve, each line of a run names the run: several may log at once.
    assert!(
        err.contains(&format!(" INFO {} log_summary: trial summary: {{", &id[..8])),
        "{err}"
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

/// The id of the newest run in `home`'s history.
fn newest_run(home: &std::path::Path) -> String {
    let out = cli_in(home, "nyc_taxi_tips", &["runs", "--json", "--limit", "1"]);
    let runs: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    runs[0]["id"].as_str().expect("an id").to_owned()
}

#[test]
fn runs_show_and_logs_read_what_run_recorded() {
    let home = tempfile::tempdir().expect("a folder");
    let home = home.path();
    assert_eq!(cli_in(home, "nyc_taxi_tips", &[]).status.code(), Some(0));
    let ok = newest_run(home);
    let out = cli_in(
        home,
        "ticket_model_evaluation",
        &["-p", "batch_size=30", "-p", "trial_id=4"],
    );
    assert_eq!(out.status.code(), Some(0));
    let ticket = newest_run(home);
    let out = cli_in(
        home,
        "nyc_taxi_tips",
        &["-p", "path=examples/data/no_such_file.csv"],
    );
    assert_eq!(out.status.code(), Some(1));
    let failed = newest_run(home);

    // `runs`: the newest first, with their states; filters by state and flow.
    let out = cli_in(home, "nyc_taxi_tips", &["runs"]);
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(
        rows.iter().map(|r| (r[0], r[1], r[2])).collect::<Vec<_>>(),
        [
            (&failed[..8], "nyc_taxi_tips", "Failed"),
            (&ticket[..8], "ticket_model_evaluation", "Success"),
            (&ok[..8], "nyc_taxi_tips", "Success"),
        ]
    );
    let out = cli_in(home, "nyc_taxi_tips", &["runs", "--state", "failed", "--json"]);
    let only: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    assert_eq!(only[0]["id"], failed.as_str());
    assert_eq!(
        only[0]["parameters"],
        serde_json::json!({"path": "examples/data/no_such_file.csv"})
    );
    let out = cli_in(
        home,
        "nyc_taxi_tips",
        &["runs", "--flow", "ticket_model_evaluation", "--json"],
    );
    let only: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(
        only[0]["parameters"],
        serde_json::json!({"trial_id": 4, "batch_size": 30, "path": "examples/data/incident_event_log_sample.csv"})
    );

    // `show` by the first characters of the id: states, attempts, messages.
    let out = cli_in(home, "nyc_taxi_tips", &["show", &failed[..8]]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("run {failed} of flow `nyc_taxi_tips` (version ")),
        "{text}"
    );
    assert!(
        text.contains("\nparameters: {\"path\":\"examples/data/no_such_file.csv\"}\n"),
        "{text}"
    );
    let tasks: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("task "))
        .skip(1)
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        tasks,
        [
            vec!["trips", "Failed", "1"],
            vec!["means", "TriggerFailed", "0"],
            vec!["clean", "TriggerFailed", "0"]
        ]
    );
    assert!(
        text.contains("cannot read `examples/data/no_such_file.csv`"),
        "{text}"
    );

    // `logs` of one task run: what its body logged.
    let out = cli_in(home, "nyc_taxi_tips", &["logs", &ticket, "--task", "log_summary"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let summary = text
        .lines()
        .find(|l| l.contains("log_summary: trial summary: {"))
        .unwrap_or_else(|| panic!("the trial's summary in its logs: {text}"));
    assert!(summary.contains("\"trial_id\":4,\"count\":30,"), "{summary}");
    assert!(text.lines().all(|l| l.contains(" log_summary: ")), "{text}");
    let out = cli_in(home, "nyc_taxi_tips", &["logs", &ok, "--task", "clean"]);
    assert!(
        stdout(&out).contains("INFO  clean: dropped passenger count 0 (mean tip $2.7985)"),
        "{}",
        stdout(&out)
    );

    // Unknown runs and tasks: exit 2, one line.
    let out = cli_in(home, "nyc_taxi_tips", &["show", "abcdef12"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: no run `abcdef12` in the run history (`runs` lists them)\n"
    );
    let out = cli_in(home, "nyc_taxi_tips", &["logs", &ok, "--task", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: run {ok} has no task `nope`; its tasks are: `trips`, `means`, `clean`\n")
    );
}

#[test]
fn two_programs_record_into_one_history_at_once() {
    let home = tempfile::tempdir().expect("a folder");
    let spawn = |trial: &str| {
        Command::new(common::example("ticket_model_evaluation"))
            .args(["-p", &format!("trial_id={trial}"), "-p", "batch_size=200"])
            .env("TIDEFLOW_HOME", home.path())
            .env("RUST_LOG", "off")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starts")
    };
    let mut children: Vec<_> = (0..4).map(|i| spawn(&i.to_string())).collect();
    for child in &mut children {
        assert_eq!(child.wait().expect("ends").code(), Some(0));
    }
    let out = cli_in(home.path(), "ticket_model_evaluation", &["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    let runs = runs.as_array().expect("an array");
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r["state"] == "Success"), "{runs:?}");
    let mut trials: Vec<u64> = runs
        .iter()
        .map(|r| r["parameters"]["trial_id"].as_u64().expect("a trial"))
        .collect();
    trials.sort_unstable();
    assert_eq!(trials, [0, 1, 2, 3]);
    for run in runs {
        let id = run["id"].as_str().expect("an id");
        let out = cli_in(home.path(), "ticket_model_evaluation", &["show", id, "--json"]);
        let shown: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
        let tasks = shown["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 9);
        assert!(
            tasks
                .iter()
                .all(|t| t["state"] == "Success" && t["attempts"] == 1),
            "{tasks:?}"
        );
    }
}

#[test]
fn a_history_that_cannot_be_used_stops_the_run_with_one_line() {
    let dir = tempfile::tempdir().expect("a folder");
    // TIDEFLOW_HOME names a file.
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").expect("written");
    let out = cli_in(&file, "nyc_taxi_tips", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: TIDEFLOW_HOME is {}, which is a file, not a folder: point TIDEFLOW_HOME at a folder (or run with \
             --no-history)\n",
            file.display()
        )
    );
    assert_eq!(stdout(&out), "", "nothing ran");
    // A folder that cannot be made (under that file).
    let under = file.join("home");
    let out = cli_in(&under, "nyc_taxi_tips", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: cannot make the run history's folder {}: Not a directory (os error 20) (or run with \
             --no-history)\n",
            under.display()
        )
    );
    // A damaged database: refused, and left as it was.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("made");
    let garbage = vec![0x5au8; 8192];
    std::fs::write(home.join("tideflow.db"), &garbage).expect("written");
    let out = cli_in(&home, "nyc_taxi_tips", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: the run history {} cannot be used: file is not a database: it is not a SQLite database (damaged?); \
             move it away and a new one is made (or run with --no-history)\n",
            home.join("tideflow.db").display()
        )
    );
    assert_eq!(
        std::fs::read(home.join("tideflow.db")).expect("still there"),
        garbage
    );
    let out = cli_in(&home, "nyc_taxi_tips", &["runs"]);
    assert_eq!(out.status.code(), Some(2));
    // --no-history runs anyway.
    let out = cli_in(&home, "nyc_taxi_tips", &["--no-history"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).ends_with(TIPS_TABLE));
}

/// The seeds' second pipeline through its CLI: a run with a parameter, its retried
/// children in `show`, the failed attempt of a child in `logs`, and Slack told of the end.
#[cfg(feature = "slack")]
#[test]
fn generous_riders_runs_from_its_cli_and_tells_slack_how_it_ended() {
    let home = tempfile::tempdir().expect("a folder");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let slack = common::serve_once(listener);
    let child = Command::new(common::example("generous_riders"))
        .args(["-p", "seed=1"])
        .env("TIDEFLOW_HOME", home.path())
        .env(
            "SLACK_WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/services/T0/B0/secret"),
        )
        .env("RUST_LOG", "off")
        .env("TIDEFLOW_PROGRESS_EVERY", "0.5")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("it starts");
    // While it runs (its retries wait 2 s), another command follows its log lines until
    // the run ends.
    let running = loop {
        let out = cli_in(home.path(), "generous_riders", &["runs", "--json"]);
        let runs: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap_or_default();
        if let Some(id) = runs[0]["id"].as_str() {
            assert_eq!(runs[0]["state"], "Running", "followed while it runs");
            break id.to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let followed = cli_in(home.path(), "generous_riders", &["logs", &running, "--follow"]);
    assert_eq!(followed.status.code(), Some(0));
    assert!(
        stdout(&followed).contains(" summarize: Running"),
        "{}",
        stdout(&followed)
    );
    let out = child.wait_with_output().expect("it runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("children: 24 Success; 9 retried"), "{text}");
    assert!(text.contains("most generous rider: "), "{text}");
    // Off a terminal, a progress line now and then (every 0.5 s here), on standard error.
    let progress = stderr(&out);
    assert!(
        !progress.is_empty() && progress.lines().all(|l| l.starts_with("progress: ")),
        "{progress}"
    );
    assert!(
        progress
            .lines()
            .any(|l| l.contains(" task runs finished; best ") && l.contains("; cleaned ")),
        "{progress}"
    );
    let (head, body) = slack.join().expect("Slack got one post");
    assert!(head.starts_with("POST /services/T0/B0/secret HTTP/1.1"), "{head}");
    assert!(
        body.contains("generous_riders") && body.contains("Success"),
        "{body}"
    );

    // The run in the history: 24 children of `cleaned`, 9 of them on a second attempt.
    let id = newest_run(home.path());
    let out = cli_in(home.path(), "generous_riders", &["show", &id, "--json"]);
    let shown: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(shown["parameters"]["seed"], 1);
    let children: Vec<&serde_json::Value> = shown["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["task"] == "cleaned" && t["map_index"].is_u64())
        .collect();
    assert_eq!(children.len(), 24);
    assert!(children.iter().all(|c| c["state"] == "Success"));
    let retried: Vec<u64> = children
        .iter()
        .filter(|c| c["attempts"].as_u64() > Some(1))
        .map(|c| c["map_index"].as_u64().expect("an index"))
        .collect();
    assert_eq!(retried.len(), 9, "{children:?}");

    // A retried child's logs: its failed load, then its second attempt.
    let task = format!("cleaned[{}]", retried[0]);
    let out = cli_in(home.path(), "generous_riders", &["logs", &id, "--task", &task]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().map(|l| l.get(9..).unwrap_or(l)).collect();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "INFO  {task}: Retrying in 2s error=flaky source: chunk "
        ))),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("INFO  {task} (attempt 2): Running"))),
        "{text}"
    );
}

/// Another program holds the history's database locked past the busy timeout (5 s): the
/// run does not start, says why in one line, and what the database held is kept.
#[test]
fn a_locked_history_stops_the_run_with_one_line_and_loses_nothing() {
    let home = tempfile::tempdir().expect("a folder");
    assert_eq!(cli_in(home.path(), "nyc_taxi_tips", &[]).status.code(), Some(0));
    let first = newest_run(home.path());
    let db = home.path().join("tideflow.db");
    let locker = rusqlite::Connection::open(&db).expect("opens");
    locker.execute_batch("BEGIN EXCLUSIVE").expect("locked");
    let out = cli_in(home.path(), "nyc_taxi_tips", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: the run history {} cannot be used: database is locked: another program has held it locked for \
             over 5 s; try again when it is done (or run with --no-history)\n",
            db.display()
        )
    );
    assert_eq!(stdout(&out), "", "nothing ran");
    locker.execute_batch("ROLLBACK").expect("unlocked");
    drop(locker);
    let out = cli_in(home.path(), "nyc_taxi_tips", &["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(runs.as_array().map(Vec::len), Some(1));
    assert_eq!(runs[0]["id"], first.as_str());
    assert_eq!(runs[0]["state"], "Success");
}

/// A run that failed on a missing input: once the input is there, `restart` runs it again
/// under its id, with its parameters.
#[test]
fn a_failed_run_restarts_once_its_input_is_fixed() {
    let home = tempfile::tempdir().expect("a folder");
    let trips = home.path().join("trips.csv");
    let param = format!("path={}", trips.display());
    let out = cli_in(home.path(), "nyc_taxi_tips", &["-p", &param]);
    assert_eq!(out.status.code(), Some(1));
    let id = newest_run(home.path());
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/yellow_tripdata_sample.csv"),
        &trips,
    )
    .expect("copied");
    let out = cli_in(home.path(), "nyc_taxi_tips", &["restart", &id[..8]]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("flow `nyc_taxi_tips` run {id}: Success")),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).ends_with(TIPS_TABLE));
    let out = cli_in(home.path(), "nyc_taxi_tips", &["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "the same run");
    assert_eq!(runs[0]["state"], "Success");
    assert_eq!(runs[0]["parameters"]["path"], trips.display().to_string());
}
