//! The command line of a tideflow program: one line in `main` gives a binary a CLI over
//! every flow it defines.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     flow_cli::main() // `tideflow::cli::main()` through the `tideflow` crate
//! }
//! ```
//!
//! - `run <flow> [--param name=value]... [--params file.json] [--executor E] [--json]`
//! - `list [--json]`: the flows, their parameters with types and defaults
//! - `graph <flow> [--format mermaid|dot]`
//! - `runs [--flow F] [--state S] [--limit N]`, `show <run>`, `logs <run> [--task t[3]]
//!   [--follow]`: the run history (`$TIDEFLOW_HOME/tideflow.db`), where `run` records
//!   every run unless `--no-history`
//!
//! With no subcommand, a program with one flow runs it (the options of `run` apply).
//! Exit code 0 when the run succeeded, 1 when it failed, 2 for a usage error. Started as
//! a worker by a cluster executor, the program serves task attempts instead.

#![warn(missing_docs)]

mod args;
mod history;
mod logs;
mod params;
mod progress;
mod serve;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use flow_runtime::registry::{registered_flows, DynFlow, FlowRegistration};

use args::{Args, Command, GraphFormat, RunArgs};

pub use logs::{init_logs, LogFormat};
pub use params::parse_value;

/// Exit code of a run that failed.
const FAILED: u8 = 1;
/// Exit code of a usage error: an unknown flow or parameter, a malformed value.
const USAGE: u8 = 2;

/// The whole `main` of a flow program: serves task attempts when started as a worker,
/// else runs the command line (see [`run`]). [`Cli`] adds to it.
pub fn main() -> ExitCode {
    Cli::new().main()
}

/// Runs the command line `args` (the program's name first), as [`main`] does without
/// worker mode: what a program with its own `main` calls. Log lines go to standard error
/// in the format `--log-format` names ([`init_logs`]), unless the program has set a
/// `tracing` subscriber of its own.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::new().run(args)
}

/// Changes a flow before each of its runs.
type Prepare = Box<dyn Fn(DynFlow) -> DynFlow>;

/// The command line of a flow program, with what the program adds: a change to a flow
/// before each of its runs (a state handler, say), and text for `--help`.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     flow_cli::Cli::new()
///         .prepare("generous_riders", |flow| flow.on_flow_state(|c: &flow_runtime::StateChange| {
///             eprintln!("the run is {}", c.new_state());
///         }))
///         .after_help("Posts each run's end to stderr.")
///         .main()
/// }
/// ```
#[derive(Default)]
pub struct Cli {
    prepare: Vec<(&'static str, Prepare)>,
    after_help: Option<String>,
}

impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cli")
            .field(
                "prepared",
                &self.prepare.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Cli {
    /// The command line over every flow of the program.
    pub fn new() -> Self {
        Cli::default()
    }

    /// Passes the flow named `flow` through `change` before each of its runs (`run`,
    /// `restart`, and with no subcommand).
    #[must_use]
    pub fn prepare(mut self, flow: &'static str, change: impl Fn(DynFlow) -> DynFlow + 'static) -> Self {
        self.prepare.push((flow, Box::new(change)));
        self
    }

    /// Text shown at the end of `--help` (environment variables the program reads, say).
    #[must_use]
    pub fn after_help(mut self, text: impl Into<String>) -> Self {
        self.after_help = Some(text.into());
        self
    }

    /// The whole `main` of the program, as [`main`].
    pub fn main(self) -> ExitCode {
        flow_runtime::worker::serve_if_worker();
        self.run(std::env::args_os())
    }

    /// Runs the command line `args`, as [`run`].
    pub fn run<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let program = args
            .first()
            .and_then(|a| std::path::Path::new(a).file_stem())
            .map_or_else(|| "flows".to_owned(), |s| s.to_string_lossy().into_owned());
        let flows = registered_flows();
        let mut command = Args::command()
            .name(program.clone())
            .bin_name(program.clone())
            .about(about(&flows));
        if let Some(text) = &self.after_help {
            command = command.after_help(text.clone());
        }
        let parsed = match command
            .try_get_matches_from(args)
            .and_then(|m| Args::from_arg_matches(&m))
        {
            Ok(parsed) => parsed,
            // Help and version print and exit 0; usage errors exit 2.
            Err(e) => e.exit(),
        };
        init_logs(parsed.log_format);
        match dispatch(&self, &program, &flows, parsed) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(USAGE)
            }
        }
    }

    /// The flow `reg` built for a run, with the program's changes.
    fn build(&self, reg: &FlowRegistration) -> DynFlow {
        let mut flow = (reg.build)();
        for (name, change) in &self.prepare {
            if *name == reg.name {
                flow = change(flow);
            }
        }
        flow
    }
}

fn about(flows: &[&FlowRegistration]) -> String {
    let names: Vec<&str> = flows.iter().map(|f| f.name).collect();
    match names.as_slice() {
        [] => "Runs the flows of this program (it has none).".to_owned(),
        [one] => format!("Runs the flow `{one}` of this program (with no subcommand: `run {one}`)."),
        _ => format!("Runs the flows of this program: {}.", names.join(", ")),
    }
}

/// Runs one command; `Err`: a usage error, said in one line.
fn dispatch(cli: &Cli, program: &str, flows: &[&FlowRegistration], args: Args) -> Result<ExitCode, String> {
    match args.command {
        Some(Command::Run { flow, options }) => run_flow(cli, find(flows, &flow)?, &options),
        Some(Command::List { json }) => {
            list(flows, json);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Runs {
            flow,
            state,
            limit,
            json,
        }) => history::runs(flow, state, limit, json).map(|()| ExitCode::SUCCESS),
        Some(Command::Show { run, json }) => history::show(&run, json).map(|()| ExitCode::SUCCESS),
        Some(Command::Logs { run, task, follow }) => {
            history::logs(&run, task.as_deref(), follow).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Restart {
            run,
            executor,
            json,
            quiet,
        }) => restart(cli, flows, &run, &executor, json, quiet),
        Some(Command::Serve(options)) => serve::serve(cli, flows, &options),
        Some(Command::Graph { flow, format }) => {
            let flow = (find(flows, &flow)?.build)();
            let text = match format {
                GraphFormat::Mermaid => flow.to_mermaid(),
                GraphFormat::Dot => flow.to_dot(),
            };
            // Written, not printed: a reader that stops early (`| head`) is not an error.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            Ok(ExitCode::SUCCESS)
        }
        None => match flows {
            [one] => run_flow(cli, one, &args.run),
            [] => Err(format!("`{program}` defines no flow (declare one with `flow!`)")),
            _ => Err(format!(
                "`{program}` defines {} flows: say which, as in `{program} run {}` (`{program} list` shows them)",
                flows.len(),
                flows[0].name
            )),
        },
    }
}

/// The flow named `name` (or `module::path::name`, for two flows of one name).
pub(crate) fn find<'a>(flows: &[&'a FlowRegistration], name: &str) -> Result<&'a FlowRegistration, String> {
    let matching: Vec<&FlowRegistration> = flows
        .iter()
        .copied()
        .filter(|f| {
            f.name == name || name.strip_suffix(f.name).and_then(|m| m.strip_suffix("::")) == Some(f.module)
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => {
            let known: Vec<String> = flows.iter().map(|f| format!("`{}`", f.name)).collect();
            Err(if known.is_empty() {
                format!("no flow is named `{name}`: this program defines none")
            } else {
                format!(
                    "no flow is named `{name}`; this program's flows are: {}",
                    known.join(", ")
                )
            })
        }
        several => Err(format!(
            "{} flows are named `{name}`: say which by its path, one of {}",
            several.len(),
            several
                .iter()
                .map(|f| format!("`{}::{}`", f.module, f.name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn list(flows: &[&FlowRegistration], json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let all: Vec<serde_json::Value> = flows
            .iter()
            .map(|reg| {
                let flow = (reg.build)();
                let params: Vec<serde_json::Value> = flow
                    .graph()
                    .params
                    .iter()
                    .zip(flow.params())
                    .map(|(spec, (_, default))| {
                        if spec.default.is_none() {
                            serde_json::json!({ "name": spec.name, "type": spec.ty, "required": true })
                        } else {
                            serde_json::json!({ "name": spec.name, "type": spec.ty, "default": default })
                        }
                    })
                    .collect();
                let now = flow_runtime::schedule::Timestamp::now();
                let schedules: Vec<serde_json::Value> = flow
                    .schedules()
                    .iter()
                    .map(|run| {
                        serde_json::json!({
                            "schedule": run.schedule.to_string(),
                            "params": serde_json::Value::Object(run.params.iter().cloned().collect()),
                            "next": run.schedule.upcoming(now, 3).iter().map(ToString::to_string).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let policy = flow.policy();
                serde_json::json!({
                    "name": reg.name,
                    "module": reg.module,
                    "description": flow.description(),
                    "version": flow_history::Recordable::run_info(&flow).version,
                    "parameters": params,
                    "output": reg.output,
                    "tasks": flow.graph().nodes.len(),
                    "schedules": schedules,
                    "serve": {
                        "missed": policy.missed.to_string(),
                        "max_running": policy.max_running,
                        "when_busy": policy.when_busy.to_string(),
                    },
                })
            })
            .collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(all));
        return;
    }
    if flows.is_empty() {
        let _ = writeln!(out, "no flows (declare one with `flow!`)");
    }
    for (i, reg) in flows.iter().enumerate() {
        let flow = (reg.build)();
        if i > 0 {
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "{}  -> {}  (version {})",
            reg.name,
            reg.output,
            flow_history::Recordable::run_info(&flow).version
        );
        let description = flow.description().trim();
        if !description.is_empty() {
            for line in description.lines() {
                let _ = writeln!(out, "    {}", line.trim());
            }
        }
        let params = flow.params();
        if params.is_empty() {
            let _ = writeln!(out, "    no parameters");
        }
        for (spec, (_, default)) in flow.graph().params.iter().zip(params) {
            let _ = writeln!(
                out,
                "    --param {}=<{}>  (default {})",
                spec.name, spec.ty, default
            );
        }
        let now = flow_runtime::schedule::Timestamp::now();
        for run in flow.schedules() {
            let next: Vec<String> = run
                .schedule
                .upcoming(now, 3)
                .iter()
                .map(ToString::to_string)
                .collect();
            let next = if next.is_empty() {
                "no more runs".to_owned()
            } else {
                format!("next {}", next.join(", "))
            };
            let _ = writeln!(out, "    schedule: {run}  ({next})");
        }
        let policy = flow.policy();
        if !flow.schedules().is_empty() && policy != flow_runtime::schedule::ServePolicy::default() {
            let limit = policy
                .max_running
                .map_or("no limit".to_owned(), |n| n.to_string());
            let _ = writeln!(
                out,
                "    serve: missed = {}, max_running = {limit}, when_busy = {}",
                policy.missed, policy.when_busy
            );
        }
    }
}

fn run_flow(cli: &Cli, reg: &FlowRegistration, options: &RunArgs) -> Result<ExitCode, String> {
    let flow = params::apply(cli.build(reg), options.params_file.as_deref(), &options.params)?;
    if options.via_serve {
        return serve::via_serve(flow, options.json);
    }
    let flow = with_executor(flow, &options.executor)?;
    // Recorded unless told not to; a history that cannot be used stops the run before
    // it starts.
    let history = if options.no_history {
        None
    } else {
        Some(history::open().map_err(|e| format!("{e} (or run with --no-history)"))?)
    };
    execute(flow, history, None, options.json, options.quiet)
}

/// `restart <run>`: the run's flow, from this program, run again under the run's id.
fn restart(
    cli: &Cli,
    flows: &[&FlowRegistration],
    given: &str,
    executor: &str,
    json: bool,
    quiet: bool,
) -> Result<ExitCode, String> {
    let history = history::open()?;
    let record = history.run(given).map_err(|e| e.to_string())?;
    if record.ended_at.is_none() {
        return Err(format!(
            "run {} is still running (pid {} on {}): restart it once it has ended",
            record.id, record.pid, record.host
        ));
    }
    let reg = find(flows, &record.flow)?;
    let id: flow_runtime::FlowRunId = record.id.parse().map_err(|e| {
        format!(
            "the run history holds a run id that is not one ({}): {e}",
            record.id
        )
    })?;
    let flow = with_executor(cli.build(reg), executor)?;
    execute(flow, Some(history), Some(id), json, quiet)
}

/// Runs `flow` (again as `restart`, when given), recorded in `history`, prints it, and
/// says how it ended.
fn execute(
    flow: DynFlow,
    history: Option<flow_history::History>,
    restart: Option<flow_runtime::FlowRunId>,
    json: bool,
    quiet: bool,
) -> Result<ExitCode, String> {
    let mut flow = flow;
    let progress = progress::Mode::pick(quiet).map(|mode| progress::Progress::start(&mut flow, mode));
    let flow = match &history {
        Some(h) => {
            h.capture_logs();
            h.record(flow)
        }
        None => flow,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let run = match restart {
        None => runtime.block_on(flow.run()),
        Some(id) => runtime.block_on(flow.restart(id)).map_err(|e| match e {
            flow_runtime::FlowError::RunNotFound { .. } => format!(
                "{e}: only runs of flows with persisted results can be restarted (`#[task(persist)]`)"
            ),
            other => other.to_string(),
        })?,
    };
    drop(flow);
    if let Some(progress) = progress {
        progress.finish();
    }
    if let Some(h) = &history {
        if !h.wait(run.id()) {
            eprintln!(
                "warning: the run history {} may miss the end of this run",
                h.path().display()
            );
        }
        h.close();
    }
    let mut out = std::io::stdout().lock();
    if json {
        let record = serde_json::json!({
            "run_id": run.id().to_string(),
            "flow": run.flow_name(),
            "state": run.state().name(),
            "message": run.state().message(),
            "output": run.output_json(),
            "error": run.error().map(|e| e.to_string()),
            "failed": run.failed_tasks().into_iter().map(|(task, state)| serde_json::json!({ "task": task, "state": state })).collect::<Vec<_>>(),
            "warnings": run.warnings(),
        });
        let _ = writeln!(out, "{record}");
    } else {
        let _ = write!(out, "{}", run.summary());
        if let Some(text) = run.output_text() {
            let _ = writeln!(out, "{}", text.trim_end());
        }
        for warning in run.warnings() {
            eprintln!("warning: {warning}");
        }
        if let Some(error) = run.error() {
            eprintln!("{error}");
        }
    }
    Ok(if run.error().is_some() {
        ExitCode::from(FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The flow on the executor `spec` names (see [`executor`]).
pub(crate) fn with_executor(flow: DynFlow, spec: &str) -> Result<DynFlow, String> {
    Ok(flow.executor(executor(spec)?))
}

/// The executor `spec` names: `local`, `sequential`, `dask://host:port` (or
/// `tcp://host:port`), `dask-local:N`. One value serves several flows: their runs share
/// one cluster.
pub(crate) fn executor(spec: &str) -> Result<flow_runtime::Executor, String> {
    let accepted = "`local`, `sequential`, `dask://host:port` or `dask-local:N`";
    match spec {
        "local" => Ok(flow_runtime::LocalExecutor::new().into()),
        "sequential" => Ok(flow_runtime::SequentialExecutor.into()),
        _ => dask_executor(spec).unwrap_or_else(|| Err(format!("unknown executor `{spec}`: {accepted}"))),
    }
}

#[cfg(feature = "dask")]
fn dask_executor(spec: &str) -> Option<Result<flow_runtime::Executor, String>> {
    use flow_dask::DaskExecutor;
    if let Some(n) = spec.strip_prefix("dask-local:") {
        return Some(match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(DaskExecutor::local(n).into()),
            _ => Err(format!(
                "`--executor {spec}`: `{n}` is not a number of workers (dask-local:2 starts a local cluster of 2)"
            )),
        });
    }
    let address = spec
        .strip_prefix("dask://")
        .map(|rest| format!("tcp://{rest}"))
        .or_else(|| spec.contains("://").then(|| spec.to_owned()))?;
    Some(
        DaskExecutor::connect(&address)
            .map(Into::into)
            .map_err(|e| format!("`--executor {spec}`: {e}")),
    )
}

#[cfg(not(feature = "dask"))]
fn dask_executor(spec: &str) -> Option<Result<flow_runtime::Executor, String>> {
    (spec.starts_with("dask")).then(|| {
        Err(format!(
            "`--executor {spec}`: this program was built without Dask (the `dask` feature of tideflow)"
        ))
    })
}
