//! Which program writes a run, and whether it is still alive: its pid and start time on
//! this host, its heartbeat from elsewhere.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, TransactionBehavior};

/// A run whose program is on another host is taken for dead after this long without a
/// heartbeat (the writer beats every few seconds while a run is open).
const HEARTBEAT_STALE_S: f64 = 30.0;

/// Seconds since the Unix epoch.
pub(crate) fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Now, in seconds since the Unix epoch.
pub(crate) fn now() -> f64 {
    seconds(SystemTime::now())
}

/// This host's name.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// When the process `pid` started (clock ticks since boot, from `/proc`), if it runs.
pub(crate) fn started(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: read after its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state); the start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `/proc` tells processes apart here (Linux); elsewhere, heartbeats do.
fn has_proc() -> bool {
    std::path::Path::new("/proc/self/stat").exists()
}

/// Whether the process `pid` (started at `pid_started`, on `host`, last heard of at
/// `heartbeat_at`) is still alive, seen from `here` at `now`.
pub(crate) fn is_alive(
    here: &str,
    now: f64,
    pid: u32,
    pid_started: Option<i64>,
    host: &str,
    heartbeat_at: f64,
) -> bool {
    if host == here && has_proc() {
        pid_started.is_some() && started(pid) == pid_started
    } else {
        now - heartbeat_at < HEARTBEAT_STALE_S
    }
}

/// Marks `Crashed` the runs left open by programs that are gone: on this host, when no
/// process has their pid and start time; elsewhere, when their heartbeat is stale. Their
/// open task runs are marked too. Returns how many runs were marked.
pub(crate) fn sweep_crashed(conn: &mut Connection) -> rusqlite::Result<usize> {
    let here = host();
    let now = now();
    let open: Vec<(i64, u32, Option<i64>, String, f64, f64)> = {
        let mut stmt = conn.prepare(
            "SELECT run, pid, pid_started, host, heartbeat_at, last_event_at FROM flow_run \
             WHERE ended_at IS NULL AND state != 'Scheduled'",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut marked = 0;
    for (run, pid, pid_started, host, heartbeat_at, last_event_at) in open {
        let alive = is_alive(&here, now, pid, pid_started, &host, heartbeat_at);
        if alive {
            continue;
        }
        let message = format!(
            "its program (pid {pid} on {host}) ended without finishing the run; last event at {}",
            crate::query::format_time(last_event_at)
        );
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE flow_run SET state = 'Crashed', message = ?2, ended_at = ?3 WHERE run = ?1 AND ended_at IS NULL",
            params![run, message, last_event_at],
        )?;
        tx.execute(
            "UPDATE task_run SET state = 'Crashed', message = 'its flow run crashed', ended_at = ?2 \
             WHERE run = ?1 AND state IN ('Pending', 'Running', 'Retrying')",
            params![run, last_event_at],
        )?;
        tx.commit()?;
        marked += 1;
    }
    Ok(marked)
}
