//! The pages, made from what the API gives. A page that follows a run has one live
//! region (`id="live"`, one event stream per page); on each event the script asks the
//! page again with `X-Fragment: live` and gets that region only.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::Value;

use crate::api::{self, Problem, RunsQuery, TaskQuery};
use crate::dag::{self, NodeView};
use crate::html::{duration, esc, page, state_badge, state_class, time, time_ms, url};
use crate::Shared;

/// The live region alone, when the script asks for it; else the whole page.
fn respond(headers: &HeaderMap, title: &str, head: &str, live: &str, events: Option<&str>) -> Response {
    if headers.get("x-fragment").is_some_and(|v| v == "live") {
        return Html(live.to_owned()).into_response();
    }
    let attrs = events.map_or(String::new(), |url| format!(" data-live=\"{}\"", esc(url)));
    Html(page(
        title,
        &format!("{head}<div id=\"live\"{attrs}>{live}</div>"),
    ))
    .into_response()
}

fn html_err(p: Problem) -> Response {
    p.html()
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `/flows`: each flow, its parameters, schedules (pause, resume), next run, last runs.
pub(crate) async fn flows(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut live = String::new();
    for served in &shared.flows {
        let f = match api::flow_json(&shared, served) {
            Ok(f) => f,
            Err(p) => return html_err(p),
        };
        let name = f["name"].as_str().unwrap_or_default();
        let _ = write!(
            live,
            "<section class=\"flow\" id=\"flow-{n}\"><div class=\"flow-head\"><h2>{n}</h2>\
             <a class=\"button\" href=\"/flows/{u}/run\" id=\"run-{n}\">Run now</a></div>\
             <p class=\"description\">{d}</p><p class=\"meta\">version <code>{v}</code></p>",
            n = esc(name),
            u = url(name),
            d = esc(f["description"].as_str().unwrap_or_default()),
            v = esc(f["version"].as_str().unwrap_or_default()),
        );
        live.push_str("<h3>Parameters</h3><ul class=\"params\">");
        for p in f["parameters"].as_array().into_iter().flatten() {
            let value = if p["required"] == true {
                "required".to_owned()
            } else {
                format!("= {}", esc(&p["default"].to_string()))
            };
            let _ = write!(
                live,
                "<li><code>{}</code>: <code>{}</code> {value}</li>",
                esc(p["name"].as_str().unwrap_or_default()),
                esc(p["type"].as_str().unwrap_or_default())
            );
        }
        live.push_str("</ul><h3>Schedules</h3>");
        let schedules = f["schedules"].as_array().cloned().unwrap_or_default();
        if schedules.is_empty() {
            live.push_str("<p class=\"meta\">none: runs by hand</p>");
        } else {
            live.push_str(
                "<table class=\"schedules\"><tr><th>schedule</th><th>next run (UTC)</th><th></th></tr>",
            );
            for s in &schedules {
                let paused = s["paused"] == true;
                let next = s["next"].as_str().map_or_else(
                    || {
                        if paused {
                            "paused".to_owned()
                        } else {
                            "none".to_owned()
                        }
                    },
                    esc,
                );
                let _ = write!(
                    live,
                    "<tr><td><code>{key}</code></td><td>{next}</td><td><form method=\"post\" action=\"/flows/{u}/schedules\">\
                     <input type=\"hidden\" name=\"schedule\" value=\"{key}\"><input type=\"hidden\" name=\"paused\" value=\"{to}\">\
                     <button type=\"submit\">{label}</button></form></td></tr>",
                    key = esc(s["key"].as_str().unwrap_or_default()),
                    u = url(name),
                    to = !paused,
                    label = if paused { "Resume" } else { "Pause" },
                );
            }
            live.push_str("</table>");
        }
        live.push_str("<h3>Last runs</h3><p class=\"marks\">");
        let last = f["last_runs"].as_array().cloned().unwrap_or_default();
        if last.is_empty() {
            live.push_str("<span class=\"meta\">no runs yet</span>");
        }
        for r in last.iter().rev() {
            let state = r["state"].as_str().unwrap_or_default();
            let id = r["id"].as_str().unwrap_or_default();
            let _ = write!(
                live,
                "<a class=\"mark {}\" href=\"/runs/{}\" title=\"{} {}\"></a>",
                state_class(state),
                url(id),
                esc(state),
                esc(&id[..8.min(id.len())])
            );
        }
        let _ = write!(
            live,
            "</p><p><a href=\"/runs?flow={}\">all runs of {}</a></p></section>",
            url(name),
            esc(name)
        );
    }
    if shared.flows.is_empty() {
        live.push_str("<p>This serve serves no flows.</p>");
    }
    respond(&headers, "Flows", "<h1>Flows</h1>", &live, Some("/api/events"))
}

/// The run form of a flow, with values typed so far and the error of one field.
fn form(flow: &str, fields: &[(String, String, String, bool)], error: Option<&Problem>) -> String {
    let mut out = format!(
        "<h1>Run <code>{f}</code> now</h1><form method=\"post\" action=\"/flows/{u}/run\" class=\"run-form\">",
        f = esc(flow),
        u = url(flow)
    );
    if let Some(e) = error.filter(|e| e.field_name().is_none()) {
        let _ = write!(out, "<p class=\"error\">{}</p>", esc(e.message()));
    }
    for (name, ty, value, required) in fields {
        let bad = error.filter(|e| e.field_name() == Some(name.as_str()));
        let _ = write!(
            out,
            "<label for=\"param-{n}\"><code>{n}</code> <span class=\"meta\">{t}{r}</span></label>\
             <input id=\"param-{n}\" name=\"{n}\" value=\"{v}\"{cls}>",
            n = esc(name),
            t = esc(ty),
            r = if *required { ", required" } else { "" },
            v = esc(value),
            cls = if bad.is_some() { " class=\"invalid\"" } else { "" },
        );
        if let Some(e) = bad {
            let _ = write!(
                out,
                "<p class=\"error\" id=\"error-{}\">{}</p>",
                esc(name),
                esc(e.message())
            );
        }
    }
    out.push_str(
        "<p class=\"meta\">Values are read as on the command line: JSON (<code>500</code>, <code>true</code>, \
         <code>[1, 2]</code>), or a bare string where JSON does not fit.</p>\
         <button type=\"submit\" id=\"start\">Start the run</button></form>",
    );
    out
}

fn fields_of(served: &crate::Served) -> Vec<(String, String, String, bool)> {
    let flow = &served.flow;
    flow.graph()
        .params
        .iter()
        .zip(flow.params())
        .map(|(spec, (_, value))| {
            let required = spec.default.is_none();
            let text = if required {
                String::new()
            } else {
                json_text(&value)
            };
            (spec.name.to_owned(), spec.ty.to_owned(), text, required)
        })
        .collect()
}

/// `GET /flows/{name}/run`: the form, from the flow's parameter types and defaults.
pub(crate) async fn run_form(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let served = match api::find_flow(&shared, &name) {
        Ok(s) => s,
        Err(p) => return html_err(p),
    };
    Html(page(
        &format!("Run {name}"),
        &form(&name, &fields_of(served), None),
    ))
    .into_response()
}

/// `POST /flows/{name}/run`: checks every value as the command line does; a wrong one
/// gives the form again (400) naming it; else the run is asked of `serve` and its page
/// opens.
pub(crate) async fn run_now(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Form(values): Form<Vec<(String, String)>>,
) -> Response {
    let served = match api::find_flow(&shared, &name) {
        Ok(s) => s,
        Err(p) => return html_err(p),
    };
    // Empty optional fields keep their defaults; an empty required one is an error.
    let mut given = Vec::new();
    let mut missing = None;
    for (pname, _, _, required) in fields_of(served) {
        match values.iter().find(|(k, _)| *k == pname).map(|(_, v)| v.trim()) {
            Some(v) if !v.is_empty() => given.push((pname, Value::String(v.to_owned()))),
            _ if required => missing = missing.or(Some(pname)),
            _ => {}
        }
    }
    for (k, _) in &values {
        if !served.flow.graph().params.iter().any(|p| p.name == k) {
            given.push((k.clone(), Value::String(String::new())));
        }
    }
    let result = match missing {
        Some(m) => Err(Problem::field(&m, format!("{m}: a value is required"))),
        None => api::ask_run(&shared, served, &given),
    };
    match result {
        Ok(id) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(problem) => {
            let mut fields = fields_of(served);
            for (n, _, v, _) in &mut fields {
                if let Some((_, typed)) = values.iter().find(|(k, _)| k == n) {
                    v.clone_from(typed);
                }
            }
            let status = problem.status();
            let body = form(&name, &fields, Some(&problem));
            (status, Html(page(&format!("Run {name}"), &body))).into_response()
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct PauseForm {
    schedule: String,
    paused: bool,
}

/// `POST /flows/{name}/schedules` (the Pause and Resume buttons).
pub(crate) async fn pause(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Form(body): Form<PauseForm>,
) -> Response {
    match api::set_paused(&shared, &name, &body.schedule, body.paused) {
        Ok(()) => Redirect::to(&format!("/flows#flow-{}", url(&name))).into_response(),
        Err(p) => html_err(p),
    }
}

/// `/runs`: filtered by flow, state and time; paged; live.
pub(crate) async fn runs(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(p) => return html_err(p),
    };
    let (runs, total) = match (shared.history.runs(&filter), shared.history.count_runs(&filter)) {
        (Ok(r), Ok(t)) => (r, t),
        (Err(e), _) | (_, Err(e)) => return html_err(Problem::internal(e)),
    };
    let mut head = String::from("<h1>Runs</h1><form class=\"filters\" method=\"get\" action=\"/runs\"><select name=\"flow\"><option value=\"\">every flow</option>");
    for f in &shared.flows {
        let n = f.flow.name();
        let _ = write!(
            head,
            "<option value=\"{n}\"{s}>{n}</option>",
            n = esc(n),
            s = if q.flow.as_deref() == Some(n) {
                " selected"
            } else {
                ""
            }
        );
    }
    head.push_str("</select><select name=\"state\"><option value=\"\">any state</option>");
    for s in [
        "Scheduled",
        "Running",
        "Success",
        "Failed",
        "Crashed",
        "Cancelled",
        "Skipped",
    ] {
        let sel = q.state.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(s));
        let _ = write!(head, "<option{}>{s}</option>", if sel { " selected" } else { "" });
    }
    head.push_str("</select><select name=\"since\"><option value=\"\">any time</option>");
    for (v, label) in [("1h", "last hour"), ("24h", "last day"), ("7d", "last week")] {
        let sel = q.since.as_deref() == Some(v);
        let _ = write!(
            head,
            "<option value=\"{v}\"{}>{label}</option>",
            if sel { " selected" } else { "" }
        );
    }
    head.push_str("</select><button type=\"submit\">Filter</button></form>");
    let mut live = format!("<p class=\"meta\">{total} run(s)</p><table class=\"runs\"><tr><th>run</th><th>flow</th><th>state</th><th>started (UTC)</th><th>duration</th><th>by</th></tr>");
    for r in &runs {
        let by = match (r.trigger.as_deref(), r.scheduled_for) {
            (Some("schedule"), Some(at)) => format!("schedule, for {}", time(Some(at))),
            (Some("manual"), _) => "hand".to_owned(),
            _ => "its program".to_owned(),
        };
        let _ = write!(
            live,
            "<tr><td><a href=\"/runs/{id}\"><code>{short}</code></a></td><td>{flow}</td><td>{state}</td><td>{start}</td><td>{dur}</td><td>{by}</td></tr>",
            id = url(&r.id),
            short = esc(&r.id[..8.min(r.id.len())]),
            flow = esc(&r.flow),
            state = state_badge(&r.state),
            start = time(r.started_at.or(Some(r.created_at))),
            dur = duration(r.started_at, r.ended_at),
            by = esc(&by),
        );
    }
    live.push_str("</table>");
    let page_no = q.page.unwrap_or(1).max(1);
    let pages = total.div_ceil(api::PAGE as u64).max(1);
    let link = |p: usize| {
        format!(
            "/runs?flow={}&state={}&since={}&page={p}",
            url(q.flow.as_deref().unwrap_or("")),
            url(q.state.as_deref().unwrap_or("")),
            url(q.since.as_deref().unwrap_or(""))
        )
    };
    live.push_str("<p class=\"pager\">");
    if page_no > 1 {
        let _ = write!(live, "<a href=\"{}\">← newer</a> ", esc(&link(page_no - 1)));
    }
    let _ = write!(live, "page {page_no} of {pages}");
    if (page_no as u64) < pages {
        let _ = write!(live, " <a href=\"{}\">older →</a>", esc(&link(page_no + 1)));
    }
    live.push_str("</p>");
    respond(&headers, "Runs", &head, &live, Some("/api/events"))
}

/// A task's state as its box shows it: a mapped task's from its children.
fn node_state(own: Option<&str>, children: &[(String, u64)]) -> String {
    let total: u64 = children.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return own.unwrap_or("Pending").to_owned();
    }
    let count = |cls: &str| -> u64 {
        children
            .iter()
            .filter(|(s, _)| state_class(s) == cls)
            .map(|(_, n)| n)
            .sum()
    };
    match own {
        Some(s) if s != "Mapped" && s != "Running" && s != "Pending" => s.to_owned(),
        _ if count("running") + count("waiting") + count("retrying") > 0 => "Running".to_owned(),
        _ if count("bad") > 0 => "Failed".to_owned(),
        _ => "Success".to_owned(),
    }
}

/// `/runs/{id}`: the run's DAG, summary table, parameters, version; live.
pub(crate) async fn run(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let run = match api::find_run(&shared, &id) {
        Ok(r) => r,
        Err(p) => return html_err(p),
    };
    let tasks = match shared.history.task_summary(&run.id) {
        Ok(t) => t,
        Err(e) => return html_err(Problem::internal(e)),
    };
    let head = format!(
        "<h1>Run <code>{short}</code> of <a href=\"/flows#flow-{fu}\">{flow}</a></h1>",
        short = esc(&run.id[..8.min(run.id.len())]),
        fu = url(&run.flow),
        flow = esc(&run.flow)
    );
    let mut live = String::new();
    let _ = write!(
        live,
        "<p class=\"run-state\">{state}{msg}</p><dl class=\"facts\"><dt>run</dt><dd><code>{id}</code></dd>\
         <dt>version</dt><dd><code>{version}</code></dd><dt>started (UTC)</dt><dd>{start}</dd>\
         <dt>duration</dt><dd>{dur}</dd><dt>parameters</dt><dd><code>{params}</code></dd>",
        state = state_badge(&run.state),
        msg = run.message.as_deref().map_or(String::new(), |m| format!(
            " <span class=\"message\">{}</span>",
            esc(m)
        )),
        id = esc(&run.id),
        version = esc(&run.version),
        start = time(run.started_at),
        dur = duration(run.started_at, run.ended_at),
        params = esc(&run.parameters.to_string()),
    );
    match (run.trigger.as_deref(), run.scheduled_for, run.schedule.as_deref()) {
        (Some("schedule"), Some(at), Some(s)) => {
            let _ = write!(
                live,
                "<dt>scheduled</dt><dd>for {} by <code>{}</code></dd>",
                time(Some(at)),
                esc(s)
            );
        }
        (Some("manual"), Some(at), _) => {
            let _ = write!(live, "<dt>asked for</dt><dd>by hand at {}</dd>", time(Some(at)));
        }
        _ => {}
    }
    live.push_str("</dl>");
    if let Some(served) = shared.flow(&run.flow) {
        let graph = served.flow.graph();
        let views: Vec<NodeView> = (0..graph.nodes.len())
            .map(|i| {
                let t = tasks.iter().find(|t| t.node as usize == i);
                let children = t.map(|t| t.children.clone()).unwrap_or_default();
                NodeView {
                    state: node_state(
                        t.and_then(|t| t.own.as_ref()).map(|o| o.state.as_str()),
                        &children,
                    ),
                    children,
                    retried: t.map_or(0, |t| t.retried_children),
                }
            })
            .collect();
        let _ = write!(
            live,
            "<div class=\"dag-box\">{}</div>",
            dag::svg(graph, &url(&run.id), &views)
        );
    }
    live.push_str("<table class=\"tasks\"><tr><th>task</th><th>state</th><th>attempts</th><th>children</th><th>retried</th><th>duration</th></tr>");
    for t in &tasks {
        let own = t.own.as_ref();
        let name = own.map_or_else(|| format!("node {}", t.node), |o| o.task.clone());
        let children = if t.children.is_empty() {
            String::new()
        } else {
            t.children
                .iter()
                .map(|(s, n)| format!("<span class=\"state {}\">{n} {}</span>", state_class(s), esc(s)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(
            live,
            "<tr id=\"task-{node}\"><td><a href=\"/runs/{id}/tasks/{node}\">{name}</a></td><td>{state}</td><td>{att}</td><td>{children}</td><td>{retried}</td><td>{dur}</td></tr>",
            id = url(&run.id),
            node = t.node,
            name = esc(&name),
            state = state_badge(&node_state(own.map(|o| o.state.as_str()), &t.children)),
            att = own.map_or(0, |o| o.attempts).max(t.max_child_attempts),
            retried = if t.retried_children > 0 { t.retried_children.to_string() } else { String::new() },
            dur = own.map_or(String::new(), |o| duration(o.started_at, o.ended_at)),
        );
    }
    live.push_str("</table>");
    let events = (run.ended_at.is_none()).then(|| format!("/api/runs/{}/events", url(&run.id)));
    respond(
        &headers,
        &format!("Run {}", &run.id[..8.min(run.id.len())]),
        &head,
        &live,
        events.as_deref(),
    )
}

/// `/runs/{id}/tasks/{node}[?index=i]`: a task run's states, attempts, message and log
/// lines (live while it runs); for a mapped task, its children, paged and filtered.
pub(crate) async fn task(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, node)): Path<(String, u32)>,
    Query(q): Query<TaskQuery>,
) -> Response {
    let run = match api::find_run(&shared, &id) {
        Ok(r) => r,
        Err(p) => return html_err(p),
    };
    let task = match api::task_json(&shared, &run, node, q.index) {
        Ok(t) => t,
        Err(p) => return html_err(p),
    };
    let name = match q.index {
        Some(i) => format!("{}[{i}]", task["task"].as_str().unwrap_or_default()),
        None => task["task"].as_str().unwrap_or_default().to_owned(),
    };
    let head = format!(
        "<h1>Task run <code>{n}</code></h1><p class=\"meta\">of run <a href=\"/runs/{u}\"><code>{short}</code></a> ({flow})</p>",
        n = esc(&name),
        u = url(&run.id),
        short = esc(&run.id[..8.min(run.id.len())]),
        flow = esc(&run.flow)
    );
    let own_state = task["state"].as_str().unwrap_or_default();
    let counts: Vec<(String, u64)> = if q.index.is_none() && own_state == "Mapped" {
        shared
            .history
            .task_summary(&run.id)
            .ok()
            .and_then(|all| all.into_iter().find(|t| t.node == node))
            .map(|t| t.children)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let state = node_state(Some(own_state), &counts);
    let state = state.as_str();
    let mut live = format!(
        "<p class=\"run-state\">{}{}</p><dl class=\"facts\"><dt>task</dt><dd><code>{}</code></dd>{}\
         <dt>started (UTC)</dt><dd>{}</dd><dt>duration</dt><dd>{}</dd></dl>",
        state_badge(state),
        task["message"].as_str().map_or(String::new(), |m| format!(
            " <span class=\"message\">{}</span>",
            esc(m)
        )),
        esc(task["function"].as_str().unwrap_or_default()),
        if counts.is_empty() {
            format!("<dt>attempts</dt><dd>{}</dd>", task["attempts"])
        } else {
            let all: u64 = counts.iter().map(|(_, n)| n).sum();
            format!("<dt>children</dt><dd>{all}</dd>")
        },
        time(task["started_at"].as_f64()),
        duration(task["started_at"].as_f64(), task["ended_at"].as_f64()),
    );
    if let Some(result) = task["result_preview"].as_str() {
        let _ = write!(
            live,
            "<h2>Result</h2><p class=\"meta\">persisted</p><pre class=\"result\" id=\"result\">{}</pre>",
            esc(result)
        );
    }
    live.push_str("<h2>States</h2><table class=\"events\"><tr><th>time (UTC)</th><th>attempt</th><th>state</th><th>message</th></tr>");
    for e in task["events"].as_array().into_iter().flatten() {
        let _ = write!(
            live,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time_ms(e["at"].as_f64()),
            e["attempt"],
            state_badge(e["new"].as_str().unwrap_or_default()),
            esc(e["message"].as_str().unwrap_or_default())
        );
    }
    live.push_str("</table><h2>Logs</h2><pre class=\"logs\" id=\"logs\">");
    let logs = task["logs"].as_array().cloned().unwrap_or_default();
    if logs.is_empty() {
        live.push_str("<span class=\"meta\">no log lines</span>");
    }
    for l in &logs {
        let at = time_ms(l["at"].as_f64());
        let attempt = l["attempt"]
            .as_u64()
            .filter(|a| *a > 1)
            .map_or(String::new(), |a| format!(" (attempt {a})"));
        let fields = l["fields"]
            .as_str()
            .filter(|f| !f.is_empty() && *f != "{}")
            .map_or(String::new(), |f| format!(" {f}"));
        let _ = writeln!(
            live,
            "<span class=\"log {lvl}\">{at} {lvl:>5}{attempt} {msg}{fields}</span>",
            lvl = esc(l["level"].as_str().unwrap_or_default()),
            msg = esc(l["message"].as_str().unwrap_or_default()),
            fields = esc(&fields),
        );
    }
    live.push_str("</pre>");
    if q.index.is_none() {
        let page_no = q.page.unwrap_or(1).max(1);
        let filter = q.state.as_deref().filter(|s| !s.is_empty());
        let offset = (page_no - 1) * api::CHILDREN_PAGE;
        if let Ok((children, total)) =
            shared
                .history
                .children(&run.id, node, filter, offset, api::CHILDREN_PAGE)
        {
            if total > 0 || filter.is_some() {
                let _ = write!(
                    live,
                    "<h2>Children</h2><p class=\"meta\">{total} child run(s){}</p><p class=\"filters\">",
                    filter.map_or(String::new(), |s| format!(" in state {}", esc(s)))
                );
                let _ = write!(live, "<a href=\"/runs/{}/tasks/{node}\">all</a>", url(&run.id));
                for (s, n) in &counts {
                    let _ = write!(
                        live,
                        " <a class=\"state {}\" href=\"/runs/{}/tasks/{node}?state={}\">{n} {}</a>",
                        state_class(s),
                        url(&run.id),
                        url(s),
                        esc(s)
                    );
                }
                live.push_str("</p>");
                live.push_str("<table class=\"children\"><tr><th>child</th><th>state</th><th>attempts</th><th>duration</th><th>message</th></tr>");
                for c in &children {
                    let i = c.map_index.unwrap_or(0);
                    let _ = write!(
                        live,
                        "<tr><td><a href=\"/runs/{u}/tasks/{node}?index={i}\">{n}[{i}]</a></td><td>{s}</td><td>{a}</td><td>{d}</td><td>{m}</td></tr>",
                        u = url(&run.id),
                        n = esc(&c.task),
                        s = state_badge(&c.state),
                        a = c.attempts,
                        d = duration(c.started_at, c.ended_at),
                        m = esc(c.message.as_deref().unwrap_or_default()),
                    );
                }
                live.push_str("</table>");
                let pages = total.div_ceil(api::CHILDREN_PAGE as u64).max(1);
                let link = |p: usize| {
                    format!(
                        "/runs/{}/tasks/{node}?state={}&page={p}",
                        url(&run.id),
                        url(filter.unwrap_or(""))
                    )
                };
                live.push_str("<p class=\"pager\">");
                if page_no > 1 {
                    let _ = write!(live, "<a href=\"{}\">← previous</a> ", esc(&link(page_no - 1)));
                }
                let _ = write!(live, "page {page_no} of {pages}");
                if (page_no as u64) < pages {
                    let _ = write!(live, " <a href=\"{}\">next →</a>", esc(&link(page_no + 1)));
                }
                live.push_str("</p>");
            }
        }
    }
    let running = task["ended_at"].is_null() || run.ended_at.is_none();
    let events = running.then(|| format!("/api/runs/{}/events", url(&run.id)));
    respond(&headers, &name, &head, &live, events.as_deref())
}
