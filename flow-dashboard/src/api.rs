//! `/api`: what the pages show, as JSON, and run now; the event streams that tell pages
//! (and anyone) when a run changed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flow_history::{RunFilter, RunRecord};
use flow_runtime::registry::DynFlow;
use flow_runtime::schedule::Timestamp;
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::html::esc;
use crate::{Served, Shared};

/// An error answer: its status, and what was wrong (and which field, for a form).
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Problem {
            status,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        Problem {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn field_name(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The same, as an HTML page.
    pub(crate) fn html(self) -> Response {
        let body = format!(
            "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/flows\">Flows</a> · <a href=\"/runs\">Runs</a></p>",
            self.status.as_u16(),
            esc(&self.message)
        );
        (
            self.status,
            axum::response::Html(crate::html::page("error", &body)),
        )
            .into_response()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
    }
}

/// The run `given` (an id, or its first characters), or 404.
pub(crate) fn find_run(shared: &Shared, given: &str) -> Result<RunRecord, Problem> {
    shared.history.run(given).map_err(|e| match e {
        flow_history::HistoryError::UnknownRun { .. } | flow_history::HistoryError::AmbiguousRun { .. } => {
            Problem::not_found(e.to_string())
        }
        other => Problem::internal(other),
    })
}

/// A flow served here, or 404.
pub(crate) fn find_flow<'a>(shared: &'a Shared, name: &str) -> Result<&'a Served, Problem> {
    shared
        .flow(name)
        .ok_or_else(|| Problem::not_found(format!("no flow `{name}` is served here")))
}

/// A flow as the flows page shows it.
pub(crate) fn flow_json(shared: &Shared, served: &Served) -> Result<Value, Problem> {
    let flow = &served.flow;
    let paused = shared.history.paused_schedules().map_err(Problem::internal)?;
    let now = Timestamp::now();
    let params: Vec<Value> = flow
        .graph()
        .params
        .iter()
        .zip(flow.params())
        .map(|(spec, (_, value))| {
            if spec.default.is_none() {
                json!({ "name": spec.name, "type": spec.ty, "required": true })
            } else {
                json!({ "name": spec.name, "type": spec.ty, "default": value })
            }
        })
        .collect();
    let schedules: Vec<Value> = flow
        .schedules()
        .iter()
        .map(|run| {
            let key = run.key();
            let is_paused = paused.contains(&(flow.name().to_owned(), key.clone()));
            json!({
                "key": key,
                "schedule": run.schedule.to_string(),
                "params": Value::Object(run.params.iter().cloned().collect()),
                "paused": is_paused,
                "next": if is_paused { None } else { run.schedule.next_after(now).map(|t| t.to_string()) },
            })
        })
        .collect();
    let last = shared
        .history
        .runs(&RunFilter {
            flow: Some(flow.name().to_owned()),
            limit: Some(12),
            ..RunFilter::default()
        })
        .map_err(Problem::internal)?;
    let policy = flow.policy();
    Ok(json!({
        "name": flow.name(),
        "description": flow.description().trim(),
        "version": served.version,
        "parameters": params,
        "schedules": schedules,
        "serve": {
            "missed": policy.missed.to_string(),
            "max_running": policy.max_running,
            "when_busy": policy.when_busy.to_string(),
        },
        "last_runs": last.iter().map(|r| json!({ "id": r.id, "state": r.state, "created_at": r.created_at })).collect::<Vec<_>>(),
    }))
}

/// `GET /api/flows`.
pub(crate) async fn flows(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, Problem> {
    let all: Result<Vec<Value>, Problem> = shared.flows.iter().map(|f| flow_json(&shared, f)).collect();
    Ok(Json(Value::Array(all?)))
}

/// Asks `serve` for a run of `served` with `values` (each read as the command line reads
/// `--param`): the run's id, or a 400 naming the field that is wrong.
pub(crate) fn ask_run(
    shared: &Shared,
    served: &Served,
    values: &[(String, Value)],
) -> Result<String, Problem> {
    let mut flow: DynFlow = served.flow.clone();
    for (name, value) in values {
        let set = match value {
            Value::String(text) => flow.clone().with_param_text(name, text),
            other => flow.clone().with_param_json(name, other.clone()),
        };
        flow = set.map_err(|e| Problem::field(name, format!("{name}: {e}")))?;
    }
    let id = shared.history.request(&flow).map_err(Problem::internal)?;
    shared.hub.nudge();
    Ok(id.to_string())
}

#[derive(Deserialize)]
pub(crate) struct RunNow {
    #[serde(default)]
    params: serde_json::Map<String, Value>,
}

/// `POST /api/flows/{name}/runs` with `{"params": {"batch_size": 500}}` (or `"500"`):
/// 201 with the run's id.
pub(crate) async fn run_now(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Json(body): Json<RunNow>,
) -> Result<Response, Problem> {
    let served = find_flow(&shared, &name)?;
    let values: Vec<(String, Value)> = body.params.into_iter().collect();
    let id = ask_run(&shared, served, &values)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "url": format!("/runs/{id}") })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct Pause {
    schedule: String,
    paused: bool,
}

/// Pauses or resumes a schedule of a flow served here.
pub(crate) fn set_paused(shared: &Shared, name: &str, schedule: &str, paused: bool) -> Result<(), Problem> {
    let served = find_flow(shared, name)?;
    if !served.flow.schedules().iter().any(|s| s.key() == schedule) {
        return Err(Problem::field(
            "schedule",
            format!("the flow `{name}` has no schedule `{schedule}`"),
        ));
    }
    shared
        .history
        .set_paused(name, schedule, paused)
        .map_err(Problem::internal)?;
    shared.hub.nudge();
    Ok(())
}

/// `POST /api/flows/{name}/schedules` with `{"schedule": "<key>", "paused": true}`.
pub(crate) async fn pause(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Json(body): Json<Pause>,
) -> Result<Json<Value>, Problem> {
    set_paused(&shared, &name, &body.schedule, body.paused)?;
    Ok(Json(json!({ "schedule": body.schedule, "paused": body.paused })))
}

/// The filters of the runs list.
#[derive(Deserialize, Default, Clone)]
pub(crate) struct RunsQuery {
    pub(crate) flow: Option<String>,
    pub(crate) state: Option<String>,
    /// `1h`, `24h`, `7d`: runs made since then.
    pub(crate) since: Option<String>,
    pub(crate) page: Option<usize>,
}

/// Runs per page.
pub(crate) const PAGE: usize = 50;

impl RunsQuery {
    pub(crate) fn filter(&self) -> Result<RunFilter, Problem> {
        let since = match self.since.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(text) => {
                let back = flow_runtime::schedule::parse_duration(text)
                    .map_err(|e| Problem::field("since", format!("since: {e}")))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                Some(now - back.as_secs_f64())
            }
        };
        Ok(RunFilter {
            flow: self.flow.clone().filter(|f| !f.is_empty()),
            state: self.state.clone().filter(|s| !s.is_empty()),
            limit: Some(PAGE),
            since,
            offset: self.page.unwrap_or(1).saturating_sub(1) * PAGE,
        })
    }
}

/// `GET /api/runs?flow=&state=&since=24h&page=2`.
pub(crate) async fn runs(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Value>, Problem> {
    let filter = q.filter()?;
    let runs = shared.history.runs(&filter).map_err(Problem::internal)?;
    let total = shared.history.count_runs(&filter).map_err(Problem::internal)?;
    Ok(Json(json!({
        "runs": runs.iter().map(RunRecord::to_json).collect::<Vec<_>>(),
        "total": total,
        "page": q.page.unwrap_or(1),
        "per_page": PAGE,
    })))
}

/// A run: its record, its tasks at a glance (mapped children counted by state), its
/// graph.
pub(crate) fn run_json(shared: &Shared, run: &RunRecord) -> Result<Value, Problem> {
    let tasks = shared.history.task_summary(&run.id).map_err(Problem::internal)?;
    let mut out = run.to_json();
    out["tasks"] = tasks
        .iter()
        .map(|t| {
            json!({
                "node": t.node,
                "task": t.own.as_ref().map(|o| o.task.clone()),
                "own": t.own.as_ref().map(flow_history::TaskRunRecord::to_json),
                "children": t.children.iter().map(|(s, n)| json!({ "state": s, "count": n })).collect::<Vec<_>>(),
                "child_count": t.child_count(),
                "retried_children": t.retried_children,
            })
        })
        .collect();
    if let Some(served) = shared.flow(&run.flow) {
        let graph = served.flow.graph();
        out["graph"] = json!({
            "nodes": graph.nodes.iter().enumerate().map(|(i, n)| json!({
                "node": i, "name": n.name, "task": n.task.name, "mapped": n.mapped,
            })).collect::<Vec<_>>(),
            "edges": graph.task_edges().iter().map(|(f, t, k)| json!({ "from": f, "to": t, "kind": k })).collect::<Vec<_>>(),
        });
    }
    Ok(out)
}

/// `GET /api/runs/{id}`.
pub(crate) async fn run(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let run = find_run(&shared, &id)?;
    Ok(Json(run_json(&shared, &run)?))
}

#[derive(Deserialize, Default)]
pub(crate) struct TaskQuery {
    pub(crate) index: Option<u32>,
    pub(crate) state: Option<String>,
    pub(crate) page: Option<usize>,
}

/// A task run: its record, its states over time, its log lines.
pub(crate) fn task_json(
    shared: &Shared,
    run: &RunRecord,
    node: u32,
    index: Option<u32>,
) -> Result<Value, Problem> {
    let task = shared
        .history
        .task_run(&run.id, node, index)
        .map_err(Problem::internal)?
        .ok_or_else(|| {
            Problem::not_found(match index {
                Some(i) => format!("run {} has no task run {node}[{i}]", run.id),
                None => format!("run {} has no task run {node}", run.id),
            })
        })?;
    let events: Vec<Value> = shared
        .history
        .events(&run.id)
        .map_err(Problem::internal)?
        .into_iter()
        .filter(|e| e.node == Some(node) && e.map_index == index)
        .map(|e| json!({ "seq": e.seq, "attempt": e.attempt, "old": e.old, "new": e.new, "message": e.message, "at": e.at }))
        .collect();
    let logs = shared
        .history
        .logs(&run.id, Some((&task.task, index)), 0)
        .map_err(Problem::internal)?;
    let mut out = task.to_json();
    out["result_preview"] = match run.id.parse::<flow_runtime::FlowRunId>() {
        Ok(run_id) => flow_runtime::ResultStore::default_location()
            .read_persisted(run_id, &task.task, index)
            .map_or(Value::Null, |bytes| Value::String(preview(&bytes))),
        Err(_) => Value::Null,
    };
    out["events"] = Value::Array(events);
    out["logs"] = logs.iter().map(log_json).collect();
    Ok(out)
}

/// At most this much of a persisted result is shown.
const PREVIEW: usize = 4096;

/// A persisted result, pretty when it is small JSON, cut at [`PREVIEW`] bytes.
fn preview(bytes: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if bytes.len() <= 64 * 1024 => serde_json::to_string_pretty(&v).unwrap_or_default(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    };
    if text.len() <= PREVIEW {
        return text;
    }
    let mut end = PREVIEW;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} bytes in all)", &text[..end], bytes.len())
}

pub(crate) fn log_json(l: &flow_history::LogLine) -> Value {
    json!({
        "id": l.id, "task": l.task, "map_index": l.map_index, "attempt": l.attempt,
        "level": l.level, "at": l.at, "target": l.target, "message": l.message, "fields": l.fields,
    })
}

/// `GET /api/runs/{id}/tasks/{node}?index=3`.
pub(crate) async fn task(
    State(shared): State<Arc<Shared>>,
    Path((id, node)): Path<(String, u32)>,
    Query(q): Query<TaskQuery>,
) -> Result<Json<Value>, Problem> {
    let run = find_run(&shared, &id)?;
    Ok(Json(task_json(&shared, &run, node, q.index)?))
}

/// Children per page.
pub(crate) const CHILDREN_PAGE: usize = 100;

/// `GET /api/runs/{id}/children/{node}?state=Failed&page=2`.
pub(crate) async fn children(
    State(shared): State<Arc<Shared>>,
    Path((id, node)): Path<(String, u32)>,
    Query(q): Query<TaskQuery>,
) -> Result<Json<Value>, Problem> {
    let run = find_run(&shared, &id)?;
    let offset = q.page.unwrap_or(1).saturating_sub(1) * CHILDREN_PAGE;
    let (page, total) = shared
        .history
        .children(
            &run.id,
            node,
            q.state.as_deref().filter(|s| !s.is_empty()),
            offset,
            CHILDREN_PAGE,
        )
        .map_err(Problem::internal)?;
    Ok(Json(json!({
        "children": page.iter().map(flow_history::TaskRunRecord::to_json).collect::<Vec<_>>(),
        "total": total,
        "page": q.page.unwrap_or(1),
        "per_page": CHILDREN_PAGE,
    })))
}

#[derive(Deserialize, Default)]
pub(crate) struct LogsQuery {
    task: Option<String>,
    index: Option<u32>,
    #[serde(default)]
    after: i64,
}

/// `GET /api/runs/{id}/logs?task=cleaned&index=7&after=120`.
pub(crate) async fn logs(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Value>, Problem> {
    let run = find_run(&shared, &id)?;
    let task = q.task.as_deref().map(|t| (t, q.index));
    let lines = shared
        .history
        .logs(&run.id, task, q.after)
        .map_err(Problem::internal)?;
    Ok(Json(lines.iter().map(log_json).collect()))
}

/// What a run's event stream sends: the run's state and its tasks at a glance.
fn snapshot(shared: &Shared, id: &str) -> Option<(String, bool)> {
    let run = shared.history.run(id).ok()?;
    let tasks = shared.history.task_summary(id).ok()?;
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|t| {
            json!({
                "node": t.node,
                "state": t.own.as_ref().map(|o| o.state.clone()),
                "children": t.children.iter().map(|(s, n)| json!([s, n])).collect::<Vec<_>>(),
            })
        })
        .collect();
    let ended = run.ended_at.is_some();
    Some((
        json!({ "id": run.id, "state": run.state, "ended": ended, "tasks": tasks }).to_string(),
        ended,
    ))
}

/// How long changes gather before a stream reads the history again.
const GATHER: Duration = Duration::from_millis(150);
/// How often a stream reads the history when it hears nothing.
const QUIET: Duration = Duration::from_secs(1);

/// `GET /api/runs/{id}/events`: server-sent events, `update` with the run's state and
/// its tasks at a glance whenever they changed (changes gathered for 150 ms, so a map of
/// 100,000 children sends a few updates a second, not 100,000), then `end`.
pub(crate) async fn run_events(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let run = find_run(&shared, &id)?;
    let target: Option<flow_runtime::FlowRunId> = run.id.parse().ok();
    let changes = shared.hub.changes();
    let stopping = shared.stopping.clone();
    let state = (shared, run.id, changes, stopping, None::<String>, false);
    let stream = futures::stream::unfold(
        state,
        move |(shared, id, mut changes, mut stopping, mut last, done)| async move {
            if done || *stopping.borrow() {
                return None;
            }
            loop {
                // After the first read, wait for a change of this run (then let more gather),
                // or a quiet second.
                if last.is_some() {
                    let heard = tokio::select! {
                        _ = stopping.changed() => return None,
                        () = tokio::time::sleep(QUIET) => false,
                        heard = async {
                            loop {
                                match changes.recv().await {
                                    Ok(change) if Some(change.run) == target => return true,
                                    Ok(_) => {}
                                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return true,
                                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                        std::future::pending::<()>().await;
                                    }
                                }
                            }
                        } => heard,
                    };
                    if heard {
                        tokio::time::sleep(GATHER).await;
                    }
                }
                let read = {
                    let (shared, id) = (Arc::clone(&shared), id.clone());
                    tokio::task::spawn_blocking(move || snapshot(&shared, &id))
                        .await
                        .ok()
                        .flatten()
                };
                let Some((data, ended)) = read else {
                    last.get_or_insert_with(String::new);
                    continue;
                };
                if last.as_deref() != Some(data.as_str()) || ended {
                    last = Some(data.clone());
                    let event = Event::default()
                        .event(if ended { "end" } else { "update" })
                        .data(data);
                    return Some((Ok(event), (shared, id, changes, stopping, last, ended)));
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /api/events`: server-sent events, `runs` whenever a run started or ended (or
/// changed state), gathered for 300 ms: what the lists of flows and runs follow.
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changes = shared.hub.changes();
    let stopping = shared.stopping.clone();
    let stream = futures::stream::unfold((changes, stopping), |(mut changes, mut stopping)| async move {
        let mut runs: Vec<Value> = Vec::new();
        let mut deadline = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stopping.changed() => return None,
                got = changes.recv() => match got {
                    Ok(change) if !change.task => {
                        if runs.is_empty() {
                            deadline = tokio::time::Instant::now() + Duration::from_millis(300);
                        }
                        runs.push(json!({ "run": change.run.to_string(), "flow": change.flow, "state": change.state }));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if runs.is_empty() {
                            deadline = tokio::time::Instant::now() + Duration::from_millis(300);
                        }
                        runs.push(Value::Null);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                () = tokio::time::sleep_until(deadline), if !runs.is_empty() => {
                    let event = Event::default().event("runs").data(Value::Array(std::mem::take(&mut runs)).to_string());
                    return Some((Ok(event), (changes, stopping)));
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
