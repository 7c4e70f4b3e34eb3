//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini), against `examples/seeds` run as `serve`, as a user clicks through it:
//! the flows page, "Run now" of `ticket_model_evaluation` with `batch_size = 500`, its
//! run page turning every node green, the `log_summary` task run and the trial's summary
//! in its logs; then `generous_riders` and one of its retried children. Screenshots of
//! each page go to `target/screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Without them the test says so loudly, and
//! fails when `CI` is set.

mod common;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

type Result<T> = std::result::Result<T, fantoccini::error::CmdError>;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `serve` of the seeds program on a port of its own; its dashboard's address.
fn start_seeds(home: &Path) -> (Proc, String) {
    let mut child = Command::new(common::example("seeds"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("TIDEFLOW_HOME", home)
        .env_remove("SLACK_WEBHOOK_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("its stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(std::io::Result::ok)
        {
            if let Some(url) = line.split("dashboard: ").nth(1) {
                let _ = tx.send(url.trim().trim_end_matches('/').to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve says where its dashboard is");
    (Proc(child), url)
}

/// chromedriver on a free port; its URL once it answers.
fn start_chromedriver() -> (Proc, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

/// Saves what the browser shows as a PNG.
async fn screenshot(driver: &Client, path: &Path) -> Result<()> {
    let png = driver.screenshot().await?;
    std::fs::write(path, png).expect("the screenshot is written");
    Ok(())
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("a folder for screenshots");
    dir
}

/// Waits (60 s at most) until `check` holds, asking again every 200 ms.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(true) = check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The states of the DAG's nodes on the page now.
async fn node_states(driver: &Client) -> Result<Vec<String>> {
    let mut states = Vec::new();
    for node in driver.find_all(Locator::Css("svg.dag g.node")).await? {
        states.push(node.attr("data-state").await?.unwrap_or_default());
    }
    Ok(states)
}

/// Starts `flow` from its form with `values`; the run page's URL.
async fn run_now(
    driver: &Client,
    base: &str,
    flow: &str,
    values: &[(&str, &str)],
    shots: &Path,
) -> Result<String> {
    driver.goto(&format!("{base}/flows")).await?;
    driver
        .find(Locator::Id(&format!("run-{flow}")))
        .await?
        .click()
        .await?;
    for (name, value) in values {
        let input = driver.find(Locator::Id(&format!("param-{name}"))).await?;
        input.clear().await?;
        input.send_keys(value).await?;
    }
    screenshot(driver, &shots.join(format!("{flow}-form.png"))).await?;
    driver.find(Locator::Id("start")).await?.click().await?;
    wait_until("the run's page", || async {
        Ok(driver.current_url().await?.path().starts_with("/runs/"))
    })
    .await;
    Ok(driver.current_url().await?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_runs_the_seed_pipelines_from_the_dashboard() -> Result<()> {
    if !have("chromedriver") || !have("chromium") {
        let message =
            "NOT RUN: the browser test needs `chromium` and `chromedriver` (apt-get install chromium \
                       chromium-driver)";
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("\n*** {message} ***\n");
        return Ok(());
    }
    let home = tempfile::tempdir().expect("a folder");
    let (_serve, base) = start_seeds(home.path());
    let (_driver_process, driver_url) = start_chromedriver();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({ "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"] }),
    );
    let driver = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a browser session");
    let shots = screenshots();
    let result = async {
        // The flows page: the three seed flows, the schedule of the scheduled one.
        driver.goto(&format!("{base}/flows")).await?;
        let text = driver.find(Locator::Css("main")).await?.text().await?;
        for flow in ["generous_riders", "nyc_taxi_tips", "ticket_model_evaluation"] {
            assert!(text.contains(flow), "{text}");
        }
        assert!(text.contains("every 24h"), "{text}");
        screenshot(&driver, &shots.join("flows.png")).await?;

        // ticket_model_evaluation with batch_size = 500: every node turns green.
        let run_url = run_now(&driver, &base, "ticket_model_evaluation", &[("batch_size", "500")], &shots).await?;
        wait_until("every node of the run to succeed", || async {
            let states = node_states(&driver).await?;
            Ok(!states.is_empty() && states.iter().all(|s| s == "Success"))
        })
        .await;
        assert_eq!(node_states(&driver).await?.len(), 9);
        let facts = driver.find(Locator::Css("dl.facts")).await?.text().await?;
        assert!(facts.contains("\"batch_size\":500"), "{facts}");
        screenshot(&driver, &shots.join("ticket_model_evaluation-run.png")).await?;

        // Its log_summary task run, opened from the DAG: the trial's summary in its logs.
        driver
            .find(Locator::XPath(
                "//*[local-name()='svg']//*[local-name()='text' and text()='log_summary']/ancestor::*[local-name()='a']",
            ))
            .await?
            .click()
            .await?;
        wait_until("the task run's page", || async { Ok(driver.current_url().await?.path().contains("/tasks/")) }).await;
        let logs = driver.find(Locator::Id("logs")).await?.text().await?;
        assert!(logs.contains("trial summary: {\"trial_id\":1,\"count\":500,"), "{logs}");
        screenshot(&driver, &shots.join("ticket_model_evaluation-log_summary.png")).await?;
        assert!(run_url.contains("/runs/"));

        // generous_riders (seed 1: the same loads fail on every run): a retried child.
        run_now(&driver, &base, "generous_riders", &[("seed", "1")], &shots).await?;
        wait_until("every node of generous_riders to succeed", || async {
            let states = node_states(&driver).await?;
            Ok(!states.is_empty() && states.iter().all(|s| s == "Success"))
        })
        .await;
        let cleaned = driver.find(Locator::Css("svg.dag g.node[data-node='1']")).await?.text().await?;
        assert!(cleaned.contains("24 Success") && cleaned.contains("9 retried"), "{cleaned}");
        screenshot(&driver, &shots.join("generous_riders-run.png")).await?;
        driver
            .find(Locator::XPath("//table[@class='tasks']//a[text()='cleaned']"))
            .await?
            .click()
            .await?;
        wait_until("the children of cleaned", || async {
            Ok(driver.find_all(Locator::Css("table.children tr")).await?.len() > 1)
        })
        .await;
        screenshot(&driver, &shots.join("generous_riders-cleaned.png")).await?;
        // The first child that took more than one attempt.
        let mut retried = None;
        for row in driver.find_all(Locator::Css("table.children tr")).await?.into_iter().skip(1) {
            let cells = row.find_all(Locator::Css("td")).await?;
            if cells[2].text().await?.trim().parse::<u32>().unwrap_or(1) > 1 {
                retried = Some(cells[0].find(Locator::Css("a")).await?);
                break;
            }
        }
        retried.expect("a retried child").click().await?;
        wait_until("the child's page", || async { Ok(driver.current_url().await?.query().is_some()) }).await;
        let states = driver.find(Locator::Css("table.events")).await?.text().await?;
        assert!(states.contains("Retrying"), "{states}");
        let facts = driver.find(Locator::Css("dl.facts")).await?.text().await?;
        assert!(!facts.contains("attempts\n1\n"), "{facts}");
        screenshot(&driver, &shots.join("generous_riders-retried-child.png")).await?;

        // nyc_taxi_tips persists `transform`: its task run shows the result.
        run_now(&driver, &base, "nyc_taxi_tips", &[], &shots).await?;
        wait_until("every node of nyc_taxi_tips to succeed", || async {
            let states = node_states(&driver).await?;
            Ok(!states.is_empty() && states.iter().all(|s| s == "Success"))
        })
        .await;
        driver
            .find(Locator::XPath("//table[@class='tasks']//a[text()='means']"))
            .await?
            .click()
            .await?;
        let result = driver.find(Locator::Id("result")).await?.text().await?;
        assert!(result.contains("3.94"), "the mean tip of one passenger: {result}");
        screenshot(&driver, &shots.join("nyc_taxi_tips-transform.png")).await?;
        Result::Ok(())
    }
    .await;
    driver.close().await?;
    result
}
