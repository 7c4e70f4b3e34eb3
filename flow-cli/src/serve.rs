//! `serve` (the flows on their schedules, until SIGINT/SIGTERM), the schedules given on
//! the command line or in a file, and `run --via-serve` (a run asked of the `serve`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use flow_history::History;
use flow_runtime::registry::{DynFlow, FlowRegistration};
use flow_runtime::schedule::{Schedule, ScheduledRun};

use crate::args::ServeArgs;
use crate::{find, Cli};

/// `serve`.
pub(crate) fn serve(cli: &Cli, all: &[&FlowRegistration], args: &ServeArgs) -> Result<ExitCode, String> {
    let regs: Vec<&FlowRegistration> = if args.flows.is_empty() {
        all.to_vec()
    } else {
        args.flows
            .iter()
            .map(|n| find(all, n))
            .collect::<Result<_, _>>()?
    };
    if regs.is_empty() {
        return Err("this program defines no flow to serve (declare one with `flow!`)".to_owned());
    }
    let grace = flow_runtime::schedule::parse_duration(&args.grace)
        .or_else(|e| {
            if args.grace.trim() == "0s" {
                Ok(Duration::ZERO)
            } else {
                Err(e)
            }
        })
        .map_err(|e| format!("`--grace {}`: {e}", args.grace))?;
    let mut given: Vec<(&'static str, Vec<ScheduledRun>)> = Vec::new();
    if let Some(path) = &args.schedules_file {
        for (name, runs) in schedules_file(path)? {
            let reg =
                find(&regs, &name).map_err(|e| format!("in the schedules file {}: {e}", path.display()))?;
            add(&mut given, reg.name, runs);
        }
    }
    for spec in &args.schedules {
        let Some((name, text)) = spec.split_once('=') else {
            return Err(format!(
                "`--schedule {spec}`: write it as FLOW=SCHEDULE, as `--schedule 'my_flow=every 1h'`"
            ));
        };
        let reg = find(&regs, name.trim())?;
        let schedule = Schedule::parse(text).map_err(|e| format!("`--schedule {spec}`: {e}"))?;
        add(&mut given, reg.name, vec![ScheduledRun::new(schedule)]);
    }
    // One executor for every flow: on Dask, one cluster serves them all.
    let executor = crate::executor(&args.executor)?;
    let mut flows = Vec::new();
    for reg in &regs {
        let mut flow = cli.build(reg).executor(executor.clone());
        if let Some((_, runs)) = given.iter().find(|(n, _)| *n == reg.name) {
            flow = flow.with_schedules(runs.clone());
        }
        flows.push(flow);
    }
    let history = Arc::new(crate::history::open()?);
    history.capture_logs();
    crate::logs::show_runs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut serve = flow_serve::Serve::new(Arc::clone(&history)).grace(grace);
    for flow in &flows {
        serve = serve.flow(flow.clone());
    }
    let (stop_ui, ui_stopped) = tokio::sync::oneshot::channel::<()>();
    let ui = if args.no_ui {
        None
    } else {
        let token = std::env::var("TIDEFLOW_TOKEN").ok();
        let dashboard = runtime
            .block_on(flow_dashboard::Dashboard::bind(
                args.bind,
                token,
                Arc::clone(&history),
                &flows,
                serve.hub(),
            ))
            .map_err(|e| e.to_string())?;
        tracing::info!("dashboard: http://{}/", dashboard.addr());
        Some(runtime.spawn(dashboard.serve(async move {
            let _ = ui_stopped.await;
        })))
    };
    let report = runtime.block_on(serve.run()).map_err(|e| e.to_string());
    let _ = stop_ui.send(());
    if let Some(ui) = ui {
        let _ = runtime.block_on(ui);
    }
    let report = report?;
    let mut counts: Vec<(String, usize)> = Vec::new();
    for done in &report.finished {
        match counts.iter_mut().find(|(s, _)| *s == done.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((done.state.clone(), 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    eprintln!(
        "serve stopped after {} run(s){}{}",
        report.finished.len(),
        if counts.is_empty() {
            String::new()
        } else {
            format!(": {}", counts.join(", "))
        },
        if report.left > 0 {
            format!("; {} left scheduled for the next serve", report.left)
        } else {
            String::new()
        }
    );
    history.close();
    Ok(ExitCode::SUCCESS)
}

fn add(given: &mut Vec<(&'static str, Vec<ScheduledRun>)>, flow: &'static str, runs: Vec<ScheduledRun>) {
    match given.iter_mut().find(|(n, _)| *n == flow) {
        Some((_, all)) => all.extend(runs),
        None => given.push((flow, runs)),
    }
}

/// A schedules file: `{"flow": ["every 1h", {"schedule": "cron 0 6 * * *", "params": {..}}]}`.
fn schedules_file(path: &Path) -> Result<Vec<(String, Vec<ScheduledRun>)>, String> {
    let shape = "a schedules file holds a JSON object of flow names to lists of schedules, as \
                 {\"my_flow\": [\"every 1h\", {\"schedule\": \"cron 0 6 * * *\", \"params\": {\"n\": 3}}]}";
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the schedules file {}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("the schedules file {} is not JSON: {e}", path.display()))?;
    let serde_json::Value::Object(flows) = json else {
        return Err(format!("the schedules file {}: {shape}", path.display()));
    };
    let mut out = Vec::new();
    for (flow, list) in flows {
        let serde_json::Value::Array(list) = list else {
            return Err(format!(
                "the schedules file {}, flow `{flow}`: {shape}",
                path.display()
            ));
        };
        let mut runs = Vec::new();
        for (i, item) in list.into_iter().enumerate() {
            let at = || {
                format!(
                    "the schedules file {}, flow `{flow}`, schedule {}",
                    path.display(),
                    i + 1
                )
            };
            let (text, params) = match item {
                serde_json::Value::String(text) => (text, serde_json::Map::new()),
                serde_json::Value::Object(mut entry) => {
                    let Some(serde_json::Value::String(text)) = entry.remove("schedule") else {
                        return Err(format!(
                            "{}: an entry needs \"schedule\": \"every 1h\"; {shape}",
                            at()
                        ));
                    };
                    let params = match entry.remove("params") {
                        None => serde_json::Map::new(),
                        Some(serde_json::Value::Object(p)) => p,
                        Some(_) => {
                            return Err(format!("{}: \"params\" is an object of names to values", at()))
                        }
                    };
                    if let Some(key) = entry.keys().next() {
                        return Err(format!(
                            "{}: unknown key \"{key}\" (an entry has \"schedule\" and \"params\")",
                            at()
                        ));
                    }
                    (text, params)
                }
                _ => return Err(format!("{}: {shape}", at())),
            };
            let schedule = Schedule::parse(&text).map_err(|e| format!("{}: {e}", at()))?;
            let mut run = ScheduledRun::new(schedule);
            for (name, value) in params {
                run = run.param(name, value);
            }
            runs.push(run);
        }
        out.push((flow, runs));
    }
    Ok(out)
}

/// `run --via-serve`: the run is recorded for the `serve` of its flow, which runs it;
/// this waits for its end and prints it as `show` does.
pub(crate) fn via_serve(flow: DynFlow, json: bool) -> Result<ExitCode, String> {
    let history = crate::history::open()?;
    let servers = history.live_servers(flow.name()).map_err(|e| e.to_string())?;
    if servers.is_empty() {
        return Err(format!(
            "no `serve` of flow `{}` is running on the run history {}: start one (`serve`), or run the flow here \
             without --via-serve",
            flow.name(),
            history.path().display()
        ));
    }
    let id = history.request(&flow).map_err(|e| e.to_string())?;
    eprintln!(
        "run {id} of {} asked of serve (pid {}); waiting for its end (Ctrl-C leaves it to the serve)",
        flow.name(),
        servers[0].pid
    );
    let code = wait_for_end(&history, &id.to_string())?;
    crate::history::show(&id.to_string(), json)?;
    Ok(code)
}

fn wait_for_end(history: &History, id: &str) -> Result<ExitCode, String> {
    loop {
        let run = history.run(id).map_err(|e| e.to_string())?;
        if run.ended_at.is_some() {
            return Ok(if run.state == "Success" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::FAILED)
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
