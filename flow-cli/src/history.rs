//! `runs`, `show` and `logs`: the run history, read for a person (or as JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use flow_history::{format_time, History, LogLine, RunFilter, RunRecord, TaskRunRecord};

/// The history at `$TIDEFLOW_HOME`, or a usage error saying why not.
pub(crate) fn open() -> Result<History, String> {
    History::open_default().map_err(|e| e.to_string())
}

fn seconds(run_start: Option<f64>, end: Option<f64>) -> String {
    match (run_start, end) {
        (Some(s), Some(e)) => format!("{:.3}", (e - s).max(0.0)),
        (Some(_), None) => "…".to_owned(),
        _ => String::new(),
    }
}

/// `runs`: one line per run.
pub(crate) fn runs(
    flow: Option<String>,
    state: Option<String>,
    limit: usize,
    json: bool,
) -> Result<(), String> {
    let history = open()?;
    let runs = history
        .runs(&RunFilter {
            flow,
            state,
            limit: Some(limit),
            ..RunFilter::default()
        })
        .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    if json {
        let all: Vec<serde_json::Value> = runs.iter().map(run_json).collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(all));
        return Ok(());
    }
    if runs.is_empty() {
        let _ = writeln!(out, "no runs recorded in {}", history.path().display());
        return Ok(());
    }
    let flow_width = runs.iter().map(|r| r.flow.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:<8}  {:<flow_width$}  {:<10}  {:<19}  {:>9}  by",
        "run", "flow", "state", "started (UTC)", "seconds"
    );
    for run in &runs {
        let by = match (run.trigger.as_deref(), run.scheduled_for) {
            (Some("schedule"), Some(at)) => format!("schedule, for {}", format_time(at)),
            (Some("manual"), _) => "hand, through serve".to_owned(),
            _ => String::new(),
        };
        let line = format!(
            "{:<8}  {:<flow_width$}  {:<10}  {:<19}  {:>9}  {by}",
            &run.id[..8.min(run.id.len())],
            run.flow,
            run.state,
            format_time(run.started_at.unwrap_or(run.created_at)),
            seconds(run.started_at, run.ended_at)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(())
}

fn run_json(run: &RunRecord) -> serde_json::Value {
    run.to_json()
}

fn task_json(t: &TaskRunRecord) -> serde_json::Value {
    t.to_json()
}

/// At most this many children of one mapped task are listed by `show` (those that did
/// not succeed); the rest are counted.
const CHILDREN_SHOWN: usize = 10;

/// `show`: the run, its parameters, and its task runs with mapped children counted by
/// state.
pub(crate) fn show(given: &str, json: bool) -> Result<(), String> {
    let history = open()?;
    let run = history.run(given).map_err(|e| e.to_string())?;
    let tasks = history.task_runs(&run.id).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    if json {
        let mut record = run_json(&run);
        record["tasks"] = tasks.iter().map(task_json).collect();
        let _ = writeln!(out, "{record}");
        return Ok(());
    }
    let _ = writeln!(out, "{}", render_show(&run, &tasks));
    Ok(())
}

fn render_show(run: &RunRecord, tasks: &[TaskRunRecord]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} of flow `{}` (version {})",
        run.id, run.flow, run.version
    );
    let _ = write!(s, "state: {}", run.state);
    if let Some(m) = &run.message {
        let _ = write!(s, ": {m}");
    }
    let _ = writeln!(s);
    if let Some(parent) = &run.parent {
        let _ = writeln!(s, "a subflow's run, run by task run {parent}");
    }
    match (run.trigger.as_deref(), run.scheduled_for, &run.schedule) {
        (Some("schedule"), Some(at), Some(schedule)) => {
            let _ = writeln!(s, "scheduled for {} UTC by `{schedule}`", format_time(at));
        }
        (Some("manual"), Some(at), _) => {
            let _ = writeln!(s, "asked for by hand at {} UTC, run by serve", format_time(at));
        }
        _ => {}
    }
    let _ = writeln!(s, "parameters: {}", run.parameters);
    let started = run.started_at.unwrap_or(run.created_at);
    let _ = write!(s, "started {} UTC", format_time(started));
    match run.ended_at {
        Some(end) => {
            let _ = writeln!(s, ", ended after {:.3}s", (end - started).max(0.0));
        }
        None => {
            let _ = writeln!(s, ", not ended (pid {} on {})", run.pid, run.host);
        }
    }
    // Each task (its row, or its children's), in the flow's order.
    let mut by_node: BTreeMap<u32, (Option<&TaskRunRecord>, Vec<&TaskRunRecord>)> = BTreeMap::new();
    for t in tasks {
        let entry = by_node.entry(t.node).or_default();
        match t.map_index {
            None => entry.0 = Some(t),
            Some(_) => entry.1.push(t),
        }
    }
    let width = tasks.iter().map(|t| t.task.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        s,
        "  {:<width$}  {:<14} {:>8} {:>10}",
        "task", "state", "attempts", "seconds"
    );
    for (own, children) in by_node.values() {
        let name = own.map_or_else(
            || children.first().map_or("", |c| c.task.as_str()),
            |t| t.task.as_str(),
        );
        if children.is_empty() {
            if let Some(t) = own {
                let _ = write!(
                    s,
                    "  {:<width$}  {:<14} {:>8} {:>10}",
                    name,
                    t.state,
                    t.attempts,
                    seconds(t.started_at, t.ended_at)
                );
                if let Some(m) = &t.message {
                    let _ = write!(s, "  {m}");
                }
                let _ = writeln!(s);
            }
            continue;
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for c in children {
            *counts.entry(c.state.as_str()).or_default() += 1;
        }
        let attempts: u32 = children.iter().map(|c| c.attempts).sum();
        let first = children
            .iter()
            .filter_map(|c| c.started_at)
            .fold(f64::INFINITY, f64::min);
        let last = children
            .iter()
            .filter_map(|c| c.ended_at)
            .fold(f64::NEG_INFINITY, f64::max);
        let span = (first.is_finite() && last.is_finite()).then(|| format!("{:.3}", (last - first).max(0.0)));
        let _ = writeln!(
            s,
            "  {:<width$}  {:<14} {:>8} {:>10}  {} children: {}",
            name,
            own.map_or("Mapped", |t| t.state.as_str()),
            attempts,
            span.unwrap_or_default(),
            children.len(),
            counts
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let unsuccessful: Vec<&&TaskRunRecord> = children
            .iter()
            .filter(|c| !matches!(c.state.as_str(), "Success" | "Cached"))
            .collect();
        for c in unsuccessful.iter().take(CHILDREN_SHOWN) {
            let _ = write!(
                s,
                "    {:<w$}  {:<14} {:>6}",
                c.name(),
                c.state,
                c.attempts,
                w = width
            );
            if let Some(m) = &c.message {
                let _ = write!(s, "  {m}");
            }
            let _ = writeln!(s);
        }
        if unsuccessful.len() > CHILDREN_SHOWN {
            let _ = writeln!(s, "    … and {} more", unsuccessful.len() - CHILDREN_SHOWN);
        }
    }
    s.trim_end().to_owned()
}

/// `clean[3]` → (`clean`, Some(3)); `clean` → (`clean`, None).
fn task_selector(text: &str) -> Result<(&str, Option<u32>), String> {
    match text.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((name, index)) => index
            .parse()
            .map(|i| (name, Some(i)))
            .map_err(|_| format!("`--task {text}`: `{index}` is not a child's index (as in `clean[3]`)")),
        None => Ok((text, None)),
    }
}

/// One log line for a person: time, level, task run, attempt when > 1, message, fields.
fn render_line(line: &LogLine) -> String {
    let mut s = format!("{} {:<5} ", &format_time(line.at)[11..], line.level);
    if let Some(task) = &line.task {
        s.push_str(task);
        if let Some(i) = line.map_index {
            let _ = write!(s, "[{i}]");
        }
        if let Some(a) = line.attempt.filter(|&a| a > 1) {
            let _ = write!(s, " (attempt {a})");
        }
        s.push_str(": ");
    }
    s.push_str(&line.message);
    if let Some(fields) = line
        .fields
        .as_deref()
        .and_then(|f| serde_json::from_str::<serde_json::Value>(f).ok())
    {
        if let Some(map) = fields.as_object() {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(text) => {
                        let _ = write!(s, " {k}={text}");
                    }
                    other => {
                        let _ = write!(s, " {k}={other}");
                    }
                }
            }
        }
    }
    s
}

/// `logs`: the run's lines (one task run's with `--task`), then new ones with
/// `--follow` until the run has ended.
pub(crate) fn logs(given: &str, task: Option<&str>, follow: bool) -> Result<(), String> {
    let history = open()?;
    let run = history.run(given).map_err(|e| e.to_string())?;
    let selector = task.map(task_selector).transpose()?;
    if let Some((name, _)) = selector {
        let tasks = history.task_runs(&run.id).map_err(|e| e.to_string())?;
        if !tasks.iter().any(|t| t.task == name) {
            let mut known: Vec<&str> = tasks.iter().map(|t| t.task.as_str()).collect();
            known.dedup();
            return Err(format!(
                "run {} has no task `{name}`; its tasks are: {}",
                run.id,
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let mut after = 0;
    loop {
        let lines = history
            .logs(&run.id, selector, after)
            .map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        for line in &lines {
            let _ = writeln!(out, "{}", render_line(line));
            after = line.id;
        }
        drop(out);
        if !follow {
            return Ok(());
        }
        let now = history.run(&run.id).map_err(|e| e.to_string())?;
        if now.ended_at.is_some() && lines.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
