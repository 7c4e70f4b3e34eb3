//! A `serve` with its dashboard on 127.0.0.1, in a runtime of its own: what the
//! dashboard's tests and its benchmark ask over HTTP.
#![allow(dead_code)] // Not every binary that includes this uses all of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tideflow::history::History;
use tideflow::serve::Serve;
use tideflow::DynFlow;

/// A `serve` of `flows` with its dashboard, in a runtime of its own.
pub struct Server {
    pub addr: SocketAddr,
    pub history: Arc<History>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(token: Option<&str>, flows: Vec<DynFlow>) -> Server {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        // Task runs' log lines go to the history, as `tideflow::cli` sets it up.
        let _ = tracing_subscriber::registry()
            .with(tideflow::history::HistoryLayer::new())
            .try_init();
        let dir = tempfile::tempdir().expect("a folder");
        let history = Arc::new(History::open_in(dir.path()).expect("a history"));
        history.capture_logs();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let h = Arc::clone(&history);
        let token = token.map(str::to_owned);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut serve = Serve::new(Arc::clone(&h)).poll_every(Duration::from_millis(200));
                for f in &flows {
                    serve = serve.flow(f.clone());
                }
                let addr = "127.0.0.1:0".parse().expect("an address");
                let dashboard = tideflow::dashboard::Dashboard::bind(addr, token, h, &flows, serve.hub())
                    .await
                    .expect("the dashboard listens");
                addr_tx.send(dashboard.addr()).expect("told");
                let (ui_stop, ui_stopped) = tokio::sync::oneshot::channel::<()>();
                let ui = tokio::spawn(dashboard.serve(async move {
                    let _ = ui_stopped.await;
                }));
                serve
                    .run_until(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
                let _ = ui_stop.send(());
                let _ = ui.await;
            });
        });
        Server {
            addr: addr_rx.recv().expect("the address"),
            history,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An HTTP client that reports every status (no error for 4xx) and follows no redirect.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}
