//! The command line's shape (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The command line of a flow program.
#[derive(Debug, Parser)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand: the options of `run`, for the program's one flow.
    #[command(flatten)]
    pub run: RunArgs,
    /// How log lines are written to standard error: `text` (one short line each) or
    /// `json` (one object each). `RUST_LOG` filters them (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = crate::LogFormat::Text)]
    pub log_format: crate::LogFormat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a flow, print its summary and its output.
    Run {
        /// The flow's name (`list` shows them).
        flow: String,
        #[command(flatten)]
        options: RunArgs,
    },
    /// List the flows, with their parameters, types and defaults.
    List {
        /// One JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
    /// List past and running runs, the newest first.
    Runs {
        /// Runs of this flow only.
        #[arg(long)]
        flow: Option<String>,
        /// Runs in this state only (`failed`, `running`, `crashed`...).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Show a run: its state, parameters and task runs (children counted by state).
    Show {
        /// The run's id, or its first characters (`runs` shows them).
        run: String,
        /// One JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Print a run's log lines.
    Logs {
        /// The run's id, or its first characters.
        run: String,
        /// One task run's lines only: `clean`, or a mapped child, `clean[3]`.
        #[arg(long)]
        task: Option<String>,
        /// Keep printing new lines until the run ends.
        #[arg(long)]
        follow: bool,
    },
    /// Run a run again, under its id: tasks whose results were persisted are not run
    /// again, the rest run (a crashed or failed run resumed).
    Restart {
        /// The run's id, or its first characters.
        run: String,
        /// Where the tasks run (as for `run`).
        #[arg(long, value_name = "EXECUTOR", default_value = "local")]
        executor: String,
        /// Print the run as one JSON object instead of its summary.
        #[arg(long)]
        json: bool,
        /// No progress on standard error.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Run the flows on their schedules, and the runs asked of it (`run --via-serve`),
    /// until SIGINT or SIGTERM; each run is recorded in the history before it starts.
    Serve(ServeArgs),
    /// Print a flow's graph.
    Graph {
        /// The flow's name.
        flow: String,
        /// Mermaid (a flowchart for Markdown) or Graphviz DOT.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
}

/// The options of `serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Serve this flow only (repeat for several; all of the program's by default).
    #[arg(long = "flow", value_name = "FLOW")]
    pub flows: Vec<String>,
    /// Run FLOW on this schedule instead of those it declares (repeat for several):
    /// `my_flow=every 1h`, `my_flow=every 10m from 2026-01-01T06:05:00Z`,
    /// `my_flow=cron 0 6 * * MON-FRI in Europe/Paris`.
    #[arg(long = "schedule", value_name = "FLOW=SCHEDULE")]
    pub schedules: Vec<String>,
    /// Schedules from a JSON file, instead of those the flows declare:
    /// `{"my_flow": ["every 1h", {"schedule": "cron 0 6 * * *", "params": {"n": 3}}]}`.
    #[arg(long = "schedules", value_name = "FILE.json")]
    pub schedules_file: Option<PathBuf>,
    /// After SIGINT/SIGTERM, how long running runs may take to finish before they are
    /// cancelled.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub grace: String,
    /// Where the tasks run (as for `run`).
    #[arg(long, value_name = "EXECUTOR", default_value = "local")]
    pub executor: String,
    /// Where the dashboard listens. Any address but a loopback one needs
    /// `TIDEFLOW_TOKEN`, a secret every request must then carry.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:4200")]
    pub bind: std::net::SocketAddr,
    /// No dashboard.
    #[arg(long)]
    pub no_ui: bool,
}

/// The options of a run.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Set a parameter: a bare string for a `String`, JSON for the rest (`n=3`,
    /// `dates=["2024-01-01"]`). Repeat for several.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Parameters from a JSON object in a file (`--param` wins over it).
    #[arg(long = "params", value_name = "FILE.json")]
    pub params_file: Option<PathBuf>,
    /// Where the tasks run: `local` (threads of this program), `sequential` (one at a
    /// time, for debugging), `dask://host:port` (a running Dask scheduler) or
    /// `dask-local:N` (a local Dask cluster of N workers).
    #[arg(long, value_name = "EXECUTOR", default_value = "local")]
    pub executor: String,
    /// Print the run as one JSON object (id, state, output, failed tasks) instead of its
    /// summary.
    #[arg(long)]
    pub json: bool,
    /// Do not record the run in the history (`$TIDEFLOW_HOME/tideflow.db`).
    #[arg(long)]
    pub no_history: bool,
    /// No progress on standard error (bars on a terminal, a line every 5 s elsewhere).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Ask the running `serve` of this flow to run it (recorded alike), wait for its end
    /// and print it.
    #[arg(long, conflicts_with_all = ["no_history", "executor"])]
    pub via_serve: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}
