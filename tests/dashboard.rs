//! The dashboard over HTTP: its pages and API against a real `serve` (in this process,
//! on 127.0.0.1), run now with a validated form, live events, pause and resume, and its
//! security: the token, other origins, unknown things, HTML escaped.

use std::time::{Duration, Instant};

mod common;

use std::sync::Arc;

use common::served::{agent, Server};
use tideflow::history::History;
use tideflow::prelude::*;
use tideflow::serve::Serve;

/// Greets `name`, logging it: what a page shows of a log line.
#[task]
fn greet_once(name: String, times: u64) -> String {
    tracing::info!("hello, {name}");
    format!("hello {name} ×{times}")
}

#[task]
fn tick(n: u64) -> u64 {
    n + 1
}

flow! {
    /// Greets someone, some times.
    fn greet(name: String = "world".into(), times: u64 = 2) -> String {
        greet_once(name, times)
    }

    /// Every second.
    #[schedule(every = "1s")]
    fn ticking(n: u64 = 1) -> u64 {
        tick(n)
    }
}

/// Waits (30 s at most) until the run `id` has ended; its JSON.
fn ended(server: &Server, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&server.url(&format!("/api/runs/{id}")), &[]);
        if status == 200 {
            let run: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            if !run["ended_at"].is_null() {
                return run;
            }
        }
        assert!(Instant::now() < deadline, "run {id} did not end: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (status, body) of a GET with `headers`.
fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = agent().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.call().expect("an answer");
    let status = response.status().as_u16();
    (status, response.into_body().read_to_string().expect("a body"))
}

/// (status, Location, body) of a form POST.
fn post_form(url: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let mut request = agent().post(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send_form(fields.iter().copied()).expect("an answer");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        location,
        response.into_body().read_to_string().expect("a body"),
    )
}

fn post_json(url: &str, body: serde_json::Value, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut request = agent().post(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send_json(body).expect("an answer");
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().expect("a body");
    (status, serde_json::from_str(&text).expect("JSON"))
}

#[test]
fn run_now_from_the_form_opens_the_run_whose_page_shows_its_dag_tasks_and_logs_escaped() {
    let server = Server::start(None, vec![greet().into()]);
    let (status, page) = get(&server.url("/flows"), &[]);
    assert_eq!(status, 200);
    assert!(page.contains("<h2>greet</h2>"), "{page}");
    assert!(
        page.contains("<code>times</code>: <code>u64</code> = 2"),
        "{page}"
    );
    let (status, form) = get(&server.url("/flows/greet/run"), &[]);
    assert_eq!(status, 200);
    assert!(form.contains("name=\"name\" value=\"world\""), "{form}");

    // A value with HTML in it, as a user could type.
    let evil = "<script>alert(1)</script>";
    let (status, location, _) = post_form(
        &server.url("/flows/greet/run"),
        &[("name", evil), ("times", "3")],
        &[],
    );
    assert_eq!(status, 303);
    let location = location.expect("a redirect");
    let id = location
        .strip_prefix("/runs/")
        .expect("to the run's page")
        .to_owned();
    let run = ended(&server, &id);
    assert_eq!(run["state"], "Success");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["parameters"], serde_json::json!({ "name": evil, "times": 3 }));
    assert_eq!(run["tasks"][0]["own"]["state"], "Success");
    assert_eq!(run["graph"]["nodes"][0]["name"], "greet_once");

    let (status, page) = get(&server.url(&location), &[]);
    assert_eq!(status, 200);
    assert!(page.contains("<svg class=\"dag\""), "{page}");
    assert!(page.contains("data-node=\"0\" data-state=\"Success\""), "{page}");
    assert!(!page.contains(evil), "parameters are escaped: {page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");

    let (status, task) = get(&server.url(&format!("/runs/{id}/tasks/0")), &[]);
    assert_eq!(status, 200);
    assert!(!task.contains(evil), "log lines are escaped: {task}");
    assert!(
        task.contains("INFO hello, &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{task}"
    );
    let (_, logs) = get(&server.url(&format!("/api/runs/{id}/logs?task=greet_once")), &[]);
    let logs: serde_json::Value = serde_json::from_str(&logs).expect("JSON");
    assert!(
        logs.as_array()
            .expect("lines")
            .iter()
            .any(|l| l["message"] == format!("hello, {evil}")),
        "{logs}"
    );

    // The live region alone, as the page's script asks for it.
    let (_, fragment) = get(&server.url(&location), &[("X-Fragment", "live")]);
    assert!(fragment.starts_with("<p class=\"run-state\">"), "{fragment}");

    // The run's event stream ends with the run's state.
    let (status, stream) = get(&server.url(&format!("/api/runs/{id}/events")), &[]);
    assert_eq!(status, 200);
    let end = stream
        .lines()
        .skip_while(|l| *l != "event: end")
        .nth(1)
        .and_then(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("an end event: {stream}"));
    let end: serde_json::Value = serde_json::from_str(end).expect("JSON");
    assert_eq!(end["state"], "Success");
    assert_eq!(end["ended"], true);

    // The runs list has it.
    let (_, runs) = get(&server.url("/api/runs?flow=greet"), &[]);
    let runs: serde_json::Value = serde_json::from_str(&runs).expect("JSON");
    assert_eq!(runs["total"], 1);
    assert_eq!(runs["runs"][0]["id"], id.as_str());
    let (status, list) = get(&server.url("/runs?flow=greet&state=success&since=1h"), &[]);
    assert_eq!(status, 200);
    assert!(list.contains(&format!("<code>{}</code>", &id[..8])), "{list}");
}

#[test]
fn a_malformed_value_is_a_400_naming_its_field_and_nothing_runs() {
    let server = Server::start(None, vec![greet().into()]);
    let (status, _, page) = post_form(
        &server.url("/flows/greet/run"),
        &[("name", "x"), ("times", "abc")],
        &[],
    );
    assert_eq!(status, 400);
    assert!(
        page.contains(
            "<p class=\"error\" id=\"error-times\">times: parameter `times` of flow `greet` expects a `u64`: invalid type: string &quot;abc&quot;, expected u64</p>"
        ),
        "{page}"
    );
    assert!(
        page.contains("name=\"times\" value=\"abc\" class=\"invalid\""),
        "the value typed is kept: {page}"
    );
    let (status, body) = post_json(
        &server.url("/api/flows/greet/runs"),
        serde_json::json!({ "params": { "times": -1 } }),
        &[],
    );
    assert_eq!(status, 400);
    assert_eq!(body["field"], "times");
    let (status, body) = post_json(
        &server.url("/api/flows/greet/runs"),
        serde_json::json!({ "params": { "tims": 3 } }),
        &[],
    );
    assert_eq!(status, 400);
    assert_eq!(body["field"], "tims");
    assert!(
        body["error"]
            .as_str()
            .expect("a message")
            .starts_with("tims: flow `greet` has no parameter `tims`"),
        "{body}"
    );
    let (_, runs) = get(&server.url("/api/runs"), &[]);
    let runs: serde_json::Value = serde_json::from_str(&runs).expect("JSON");
    assert_eq!(runs["total"], 0);
}

#[test]
fn unknown_runs_flows_and_tasks_are_404() {
    let server = Server::start(None, vec![greet().into()]);
    for path in [
        "/runs/0123abcd",
        "/api/runs/0123abcd",
        "/flows/nope/run",
        "/api/runs/0123abcd/events",
        "/nowhere",
    ] {
        assert_eq!(get(&server.url(path), &[]).0, 404, "{path}");
    }
    let (status, body) = post_json(&server.url("/api/flows/nope/runs"), serde_json::json!({}), &[]);
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no flow `nope` is served here");
    let (_, location, _) = post_form(&server.url("/flows/greet/run"), &[], &[]);
    let id = location.expect("a run").trim_start_matches("/runs/").to_owned();
    ended(&server, &id);
    assert_eq!(get(&server.url(&format!("/runs/{id}/tasks/7")), &[]).0, 404);
    assert_eq!(
        get(&server.url(&format!("/api/runs/{id}/tasks/0?index=3")), &[]).0,
        404
    );
}

#[test]
fn with_a_token_every_request_carries_it_and_other_origins_cannot_post() {
    let server = Server::start(Some("s3cret"), vec![greet().into()]);
    assert_eq!(get(&server.url("/flows"), &[]).0, 401);
    assert_eq!(
        get(&server.url("/api/runs"), &[("Authorization", "Bearer wrong")]).0,
        401
    );
    assert_eq!(
        get(&server.url("/api/runs"), &[("Authorization", "Bearer s3cret")]).0,
        200
    );
    // Opened once with ?token=, the browser keeps it in a cookie.
    let response = agent()
        .get(&server.url("/flows?token=s3cret"))
        .call()
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a cookie")
        .to_owned();
    assert_eq!(cookie, "tideflow_token=s3cret; HttpOnly; SameSite=Strict; Path=/");
    assert_eq!(
        get(&server.url("/runs"), &[("Cookie", "tideflow_token=s3cret")]).0,
        200
    );
    let (status, body) = post_json(&server.url("/api/flows/greet/runs"), serde_json::json!({}), &[]);
    assert_eq!(status, 401, "{body}");

    let auth = ("Authorization", "Bearer s3cret");
    let (status, _, body) = post_form(
        &server.url("/flows/greet/run"),
        &[("times", "1")],
        &[auth, ("Origin", "http://evil.example")],
    );
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = post_form(
        &server.url("/flows/greet/run"),
        &[("times", "1")],
        &[auth, ("Origin", &format!("http://{}", server.addr))],
    );
    assert_eq!(status, 303);
    let (_, runs) = get(&server.url("/api/runs"), &[auth]);
    let runs: serde_json::Value = serde_json::from_str(&runs).expect("JSON");
    assert_eq!(runs["total"], 1, "only the same-origin POST made a run");
}

#[test]
fn a_dashboard_other_machines_reach_needs_a_token() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a folder");
    let history = Arc::new(History::open_in(dir.path()).expect("a history"));
    let serve = Serve::new(Arc::clone(&history));
    let err = runtime
        .block_on(tideflow::dashboard::Dashboard::bind(
            "0.0.0.0:0".parse().expect("an address"),
            None,
            history,
            &[greet().into()],
            serve.hub(),
        ))
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the dashboard would listen on 0.0.0.0:0, which other machines can reach: set TIDEFLOW_TOKEN to a secret \
         that every request must then carry, or bind 127.0.0.1"
    );
}

#[test]
fn a_paused_schedule_runs_no_slot_until_it_is_resumed() {
    let server = Server::start(None, vec![ticking().into()]);
    let count = || {
        let (_, runs) = get(&server.url("/api/runs?flow=ticking"), &[]);
        let runs: serde_json::Value = serde_json::from_str(&runs).expect("JSON");
        runs["total"].as_u64().expect("a count")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() < 1 {
        assert!(Instant::now() < deadline, "a first slot");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = post_json(
        &server.url("/api/flows/ticking/schedules"),
        serde_json::json!({ "schedule": "every 1s", "paused": true }),
        &[],
    );
    assert_eq!(status, 200);
    let (_, flows) = get(&server.url("/api/flows"), &[]);
    let flows: serde_json::Value = serde_json::from_str(&flows).expect("JSON");
    assert_eq!(flows[0]["schedules"][0]["paused"], true);
    assert!(flows[0]["schedules"][0]["next"].is_null());
    // A slot may have been recorded as the pause was written; none after.
    std::thread::sleep(Duration::from_millis(1200));
    let paused_at = count();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(count(), paused_at, "no slot while paused");
    let (status, _, _) = post_form(
        &server.url("/flows/ticking/schedules"),
        &[("schedule", "every 1s"), ("paused", "false")],
        &[],
    );
    assert_eq!(status, 303);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() <= paused_at {
        assert!(Instant::now() < deadline, "slots again once resumed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = post_json(
        &server.url("/api/flows/ticking/schedules"),
        serde_json::json!({ "schedule": "every 2s", "paused": true }),
        &[],
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"], "the flow `ticking` has no schedule `every 2s`");
    drop(server.history.clone());
}
