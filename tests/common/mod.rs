//! What several test binaries share.

pub mod served;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The Python to run the bridge with, or `None` (after saying so) when there is none.
pub fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TIDEFLOW_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dask-venv/bin/python")),
    ];
    for p in candidates.into_iter().flatten() {
        let ok = std::process::Command::new(&p)
            .args(["-c", "import distributed"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    let message = "NOT RUN: the Dask tests need Python with Dask's client; run `.ci/dask-venv` (or set \
                   TIDEFLOW_PYTHON) and run them again";
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("\n*** {message} ***\n");
    None
}

/// The executor `TIDEFLOW_TEST_EXECUTOR` names: `local` (the default) or `dask-local:N`,
/// a local Dask cluster of N workers shared by every test of the binary.
///
/// # Panics
/// For another value, or for `dask-local:N` without Python and Dask under CI.
#[allow(dead_code)] // Not every test binary that shares this module uses it.
pub fn executor() -> tideflow::Executor {
    static DASK: std::sync::OnceLock<Option<tideflow::dask::DaskExecutor>> = std::sync::OnceLock::new();
    let chosen = std::env::var("TIDEFLOW_TEST_EXECUTOR").unwrap_or_default();
    if chosen.is_empty() || chosen == "local" {
        return tideflow::Executor::default();
    }
    let n: usize = chosen
        .strip_prefix("dask-local:")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("TIDEFLOW_TEST_EXECUTOR=`{chosen}`: use `local` or `dask-local:N`"));
    let dask = DASK.get_or_init(|| python().map(|p| tideflow::dask::DaskExecutor::local(n).python(p)));
    match dask {
        Some(dask) => dask.clone().into(),
        None => tideflow::Executor::default(),
    }
}

/// Whether task bodies run in this process (the local executor), where a test's in-process
/// counters count them; on Dask they run in worker processes, which count for themselves.
#[allow(dead_code)]
pub fn bodies_run_here() -> bool {
    matches!(executor(), tideflow::Executor::Local(_))
}

/// Checks a count of task bodies run, where this process counts them (see
/// [`bodies_run_here`]); tests check the run record's attempts on every executor.
#[allow(dead_code)]
#[track_caller]
pub fn assert_calls<T: PartialEq + std::fmt::Debug>(counted: T, want: T) {
    if bodies_run_here() {
        assert_eq!(counted, want, "task bodies run, as counted in this process");
    }
}

/// Waits (60 s at most per event) until `k` mapped children of `task` (any task, for
/// `None`) have succeeded, from a run's events.
#[allow(dead_code)]
pub async fn children_succeeded(events: &mut tideflow::event::Subscription, task: Option<&str>, k: usize) {
    use tideflow::event::Received;
    let mut done = 0;
    while done < k {
        match tokio::time::timeout(std::time::Duration::from_secs(60), events.recv()).await {
            Ok(Some(Received::Event(e)))
                if e.map_index.is_some()
                    && e.new.is_success()
                    && task.is_none_or(|t| e.task.as_deref() == Some(t)) =>
            {
                done += 1
            }
            Ok(Some(_)) => {}
            other => panic!("the run stopped early: {other:?}"),
        }
    }
}

/// A writer that keeps what is written, for a `tracing_subscriber::fmt` subscriber whose
/// output a test reads.
#[allow(dead_code)] // Not every test binary that shares this module uses it.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A process killed (SIGKILL) when the test is done with it.
#[allow(dead_code)] // Not every test binary that shares this module uses it.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Starts `python -m <module> <args>`, and waits (30 s at most) until its standard
    /// error has said `ready`; its later output is drained on a thread.
    pub fn start(python: &Path, module: &str, args: &[&str], scratch: &Path, ready: &'static str) -> Proc {
        let mut child = Command::new(python)
            .args(["-m", module])
            .args(args)
            .env("DASK_TEMPORARY_DIRECTORY", scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python starts");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(ready) {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("`{module}` did not say `{ready}` within 30 s"));
        Proc(child)
    }
}

/// A Dask cluster started with Dask's own commands (see [`start_cluster`]), and its
/// scratch folder; every process is killed when it is dropped.
#[allow(dead_code)]
pub struct TestCluster {
    /// The scheduler's address.
    pub address: String,
    /// The scheduler.
    pub scheduler: Proc,
    /// The workers.
    pub workers: Vec<Proc>,
    python: PathBuf,
    _scratch: tempfile::TempDir,
}

#[allow(dead_code)]
impl TestCluster {
    /// A scheduler and `workers` workers, run by `python`.
    pub fn start(python: &Path, workers: usize) -> Self {
        let scratch = tempfile::tempdir().expect("a scratch folder");
        let (address, scheduler, workers) = start_cluster(python, workers, scratch.path());
        TestCluster {
            address,
            scheduler,
            workers,
            python: python.to_owned(),
            _scratch: scratch,
        }
    }

    /// An executor connected to it (each call: another bridge, as another program's).
    pub fn executor(&self) -> tideflow::dask::DaskExecutor {
        tideflow::dask::DaskExecutor::connect(&self.address)
            .expect("an address")
            .python(&self.python)
    }
}

/// A scheduler and `workers` single-thread workers without nannies, on 127.0.0.1.
#[allow(dead_code)]
pub fn start_cluster(python: &Path, workers: usize, scratch: &Path) -> (String, Proc, Vec<Proc>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let address = format!("tcp://127.0.0.1:{port}");
    let scheduler = Proc::start(
        python,
        "distributed.cli.dask_scheduler",
        &["--host", "127.0.0.1", "--port", &port, "--no-dashboard"],
        scratch,
        "Scheduler at:",
    );
    let workers = (0..workers)
        .map(|_| {
            Proc::start(
                python,
                "distributed.cli.dask_worker",
                &[&address, "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                scratch,
                "Registered to:",
            )
        })
        .collect();
    (address, scheduler, workers)
}

#[allow(dead_code)]
/// A one-request HTTP server: answers 200 and hands back the request's head and body.
pub fn serve_once(listener: std::net::TcpListener) -> std::thread::JoinHandle<(String, String)> {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        let (head, length) = loop {
            let n = std::io::Read::read(&mut stream, &mut buf).expect("read the request");
            assert!(n > 0, "the connection closed before the request's head");
            request.extend_from_slice(&buf[..n]);
            if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&request[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().unwrap())
                    })
                    .expect("a Content-Length");
                request.drain(..end + 4);
                break (head, length);
            }
        };
        while request.len() < length {
            let n = std::io::Read::read(&mut stream, &mut buf).expect("read the body");
            assert!(n > 0, "the connection closed before the body's end");
            request.extend_from_slice(&buf[..n]);
        }
        std::io::Write::write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .unwrap();
        (head, String::from_utf8(request).unwrap())
    })
}

/// The example program `name`, built by cargo once per test binary (a no-op when it is up
/// to date: `cargo test` builds the examples before it runs the tests, `cargo test --test
/// cli` does not).
#[allow(dead_code)]
pub fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Option<std::collections::HashSet<String>>> = std::sync::Mutex::new(None);
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built
        .get_or_insert_with(std::collections::HashSet::new)
        .insert(name.to_owned())
    {
        return path;
    }
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "--example", name]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example {name} failed");
    path
}
