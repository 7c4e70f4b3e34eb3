//! The three seed pipelines in one program, as the seeds' agent served them: one `serve`
//! runs `ticket_model_evaluation` every 24 hours and the others on request, with the
//! dashboard at http://127.0.0.1:4200/.
//!
//! ```text
//! cargo run --example seeds -- serve                  # schedules, runs by hand, dashboard
//! cargo run --example seeds -- list                   # the three flows, their schedules
//! cargo run --example seeds -- run generous_riders -p seed=1
//! ```
//!
//! The flows are the examples' own (each file is a module here, with its tasks, types and
//! parsing), so they run the same code as `cargo run --example <name>`.

#[allow(dead_code)]
#[path = "generous_riders.rs"]
mod generous_riders;
#[allow(dead_code)]
#[path = "nyc_taxi_tips.rs"]
mod nyc_taxi_tips;
#[allow(dead_code)]
#[path = "ticket_model_evaluation.rs"]
mod ticket_model_evaluation;

fn main() -> std::process::ExitCode {
    tideflow::cli::Cli::new()
        .prepare("generous_riders", generous_riders::tell_slack)
        .after_help(generous_riders::SLACK_HELP)
        .main()
}
