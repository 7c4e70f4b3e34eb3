//! The dashboard on a map of 100,000 children: how long its pages take while the run
//! goes on and once it has ended, and how many live updates the run page's event stream
//! sends (changes are gathered, not sent one by one).
//!
//! ```text
//! cargo bench --bench dashboard               # 100,000 children of 50 µs each
//! cargo bench --bench dashboard -- 20000 0    # N children of D µs each
//! ```
//!
//! `serve` and its dashboard run in this process on 127.0.0.1 with a run history in a
//! temporary folder; the run is asked for through the API, as "run now" does.

use std::time::{Duration, Instant};

use served::agent;
use tideflow::prelude::*;

#[path = "../tests/common/served.rs"]
mod served;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn add(x: u64, delay_us: u64) -> u64 {
    if delay_us > 0 {
        std::thread::sleep(Duration::from_micros(delay_us));
    }
    x + 1
}

flow! {
    /// A map of `n` children, each `delay_us` long.
    fn big_map(n: u64 = 100_000, delay_us: u64 = 50) -> u64 {
        let ns = numbers(n);
        let added = add.map(ns, unmapped(delay_us));
        total(added)
    }
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

/// Seconds a GET of `url` takes, body read; its status.
fn time_get(url: &str) -> (f64, u16, usize) {
    let start = Instant::now();
    let response = agent().get(url).call().expect("an answer");
    let status = response.status().as_u16();
    let body = response.into_body().read_to_string().expect("a body");
    (start.elapsed().as_secs_f64(), status, body.len())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let delay_us: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let server = served::Server::start(None, vec![big_map().into()]);
    let base = format!("http://{}", server.addr);

    let response = agent()
        .post(&format!("{base}/api/flows/big_map/runs"))
        .send_json(serde_json::json!({ "params": { "n": n, "delay_us": delay_us } }))
        .expect("asked");
    let body: serde_json::Value =
        serde_json::from_str(&response.into_body().read_to_string().expect("a body")).expect("JSON");
    let id = body["id"].as_str().expect("an id").to_owned();
    let run_page = format!("{base}/runs/{id}");

    // The run page's event stream, read as the page's script reads it.
    let events_url = format!("{base}/api/runs/{id}/events");
    let updates = std::thread::spawn(move || {
        let response = agent().get(&events_url).call().expect("a stream");
        let text = response
            .into_body()
            .read_to_string()
            .expect("the stream to its end");
        text.lines().filter(|l| l.starts_with("event: ")).count()
    });

    // While it runs: the run page, as the script asks for it on each update.
    let started = Instant::now();
    let mut during = Vec::new();
    loop {
        let (s, status, _) = time_get(&run_page);
        assert_eq!(status, 200);
        during.push(s);
        let (_, _, _) = time_get(&format!("{base}/api/runs/{id}"));
        let done = agent()
            .get(&format!("{base}/api/runs/{id}"))
            .call()
            .ok()
            .and_then(|r| r.into_body().read_to_string().ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| !v["ended_at"].is_null());
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let run_s = started.elapsed().as_secs_f64();
    let events = updates.join().expect("the stream's reader");

    println!(
        "map of {n} children, {delay_us} µs each: the run took {run_s:.2} s (asked for through the API)"
    );
    println!(
        "while it ran: run page {} loads, median {:.3} s, max {:.3} s; its event stream sent {events} events",
        during.len(),
        median(during.clone()),
        during.iter().copied().fold(0.0, f64::max)
    );
    let after = [
        ("run page", format!("/runs/{id}")),
        ("run, JSON", format!("/api/runs/{id}")),
        (
            "mapped task page (children page 1)",
            format!("/runs/{id}/tasks/1"),
        ),
        (
            "children page 1000, JSON",
            format!("/api/runs/{id}/children/1?page=1000"),
        ),
        ("a child's page", format!("/runs/{id}/tasks/1?index={}", n - 1)),
        ("runs page", "/runs".to_owned()),
        ("flows page", "/flows".to_owned()),
    ];
    println!(
        "{:<36} {:>9} {:>9} {:>10}",
        "after the run (best of 5)", "seconds", "status", "bytes"
    );
    for (what, path) in after {
        let mut best = f64::MAX;
        let mut last = (0, 0);
        for _ in 0..5 {
            let (s, status, bytes) = time_get(&format!("{base}{path}"));
            best = best.min(s);
            last = (status, bytes);
        }
        println!("{what:<36} {best:>9.3} {:>9} {:>10}", last.0, last.1);
    }
    drop(server);
}
