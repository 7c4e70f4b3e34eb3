//! The database's schema, versioned in SQLite's `user_version`, and its migrations.
//!
//! Each migration is a batch of SQL run in one transaction with the version bump, so a
//! database is at one version or the next, never between. A database of a newer version
//! (written by a newer tideflow) is refused before anything is written to it.
//!
//! (`rusqlite_migration` does the same over `user_version`; its current releases need a
//! newer Rust than this workspace's 1.89, and the whole of it is these few lines.)

use rusqlite::{Connection, TransactionBehavior};

use crate::HistoryError;

/// The migrations, in order: the database's version is how many of them it has.
const MIGRATIONS: &[&str] = &[
    // 1: flows, runs, task runs, state events (a row each), logs.
    "
    CREATE TABLE flow (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL,
        version TEXT NOT NULL,
        seen_at REAL NOT NULL
    );
    CREATE TABLE flow_run (
        run INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        flow TEXT NOT NULL,
        version TEXT NOT NULL,
        parameters TEXT NOT NULL,
        state TEXT NOT NULL,
        message TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        last_event_at REAL NOT NULL,
        pid INTEGER NOT NULL,
        pid_started INTEGER,
        host TEXT NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    CREATE INDEX flow_run_by_flow ON flow_run (flow, run);
    CREATE INDEX flow_run_by_state ON flow_run (state, run);
    CREATE TABLE task_run (
        run INTEGER NOT NULL REFERENCES flow_run (run),
        node INTEGER NOT NULL,
        map_index INTEGER NOT NULL, -- -1: not a mapped child
        task TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        state TEXT NOT NULL,
        message TEXT,
        started_at REAL,
        ended_at REAL,
        PRIMARY KEY (run, node, map_index)
    ) WITHOUT ROWID;
    CREATE TABLE state_event (
        run INTEGER NOT NULL REFERENCES flow_run (run),
        seq INTEGER NOT NULL,
        node INTEGER, -- NULL: the flow run's own
        map_index INTEGER,
        attempt INTEGER NOT NULL,
        old TEXT NOT NULL,
        new TEXT NOT NULL,
        message TEXT,
        at REAL NOT NULL,
        PRIMARY KEY (run, seq)
    ) WITHOUT ROWID;
    CREATE TABLE log (
        id INTEGER PRIMARY KEY,
        run INTEGER NOT NULL REFERENCES flow_run (run),
        node INTEGER,
        map_index INTEGER,
        attempt INTEGER,
        level TEXT NOT NULL,
        at REAL NOT NULL,
        target TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT
    );
    CREATE INDEX log_by_task_run ON log (run, node, map_index, id);
    ",
    // 2: state events packed by the batch they were written in (a row each cost more
    // than the run): one row holds events first_seq..=last_seq as a JSON array of
    // [seq, node, map_index, attempt, old, new, message, at] (node NULL: the flow run's).
    "
    DROP TABLE IF EXISTS state_event;
    CREATE TABLE IF NOT EXISTS state_events (
        run INTEGER NOT NULL REFERENCES flow_run (run),
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        events TEXT NOT NULL,
        PRIMARY KEY (run, first_seq)
    ) WITHOUT ROWID;
    ",
    // 3: a subflow's run names the parent's task run that ran it.
    "
    ALTER TABLE flow_run ADD COLUMN parent TEXT;
    CREATE INDEX flow_run_by_parent ON flow_run (parent);
    ",
    // 4: a task run's task (the function), beside its name in the flow (its binding).
    "
    ALTER TABLE task_run ADD COLUMN function TEXT;
    ",
    // 5: `serve`. A run it records before it starts is `Scheduled`: its slot
    // (`scheduled_for`), the schedule's text with its parameters (`schedule`; NULL for a
    // run asked for by hand), what asked for it (`trigger`: 'schedule', 'manual'; NULL for
    // a run its program started), and the `serve` that runs it (`server`). One run per
    // slot of a schedule, whoever records it. `server` rows are the `serve` processes.
    "
    ALTER TABLE flow_run ADD COLUMN scheduled_for REAL;
    ALTER TABLE flow_run ADD COLUMN schedule TEXT;
    ALTER TABLE flow_run ADD COLUMN trigger TEXT;
    ALTER TABLE flow_run ADD COLUMN server INTEGER;
    CREATE UNIQUE INDEX flow_run_slot ON flow_run (flow, schedule, scheduled_for) WHERE schedule IS NOT NULL;
    CREATE TABLE server (
        id INTEGER PRIMARY KEY,
        pid INTEGER NOT NULL,
        pid_started INTEGER,
        host TEXT NOT NULL,
        flows TEXT NOT NULL, -- JSON array of the flows' names
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        stopped_at REAL
    );
    ",
    // 6: schedules paused (from the dashboard): `serve` records none of their slots.
    "
    CREATE TABLE schedule_pause (
        flow TEXT NOT NULL,
        schedule TEXT NOT NULL, -- the schedule's key (its text and parameters)
        paused_at REAL NOT NULL,
        PRIMARY KEY (flow, schedule)
    ) WITHOUT ROWID;
    ",
];

/// The schema version this build writes.
pub(crate) const VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database to [`VERSION`], or refuses one that is newer.
pub(crate) fn migrate(conn: &mut Connection, path: &std::path::Path) -> Result<(), HistoryError> {
    let db = |source| HistoryError::Database {
        path: path.to_owned(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let found: u32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    if found > VERSION {
        return Err(HistoryError::Newer {
            path: path.to_owned(),
            found,
            known: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(db)?;
        tx.pragma_update(None, "user_version", i as u32 + 1).map_err(db)?;
    }
    tx.commit().map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_database_gets_every_migration_and_a_second_open_changes_nothing() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("h.db");
        let mut conn = Connection::open(&path).expect("opens");
        migrate(&mut conn, &path).expect("migrates");
        let v: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("a version");
        assert_eq!(v, VERSION);
        migrate(&mut conn, &path).expect("again: nothing to do");
        let tables: u32 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .expect("counted");
        assert_eq!(tables, 7);
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_runs() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("h.db");
        let mut conn = Connection::open(&path).expect("opens");
        conn.execute_batch(MIGRATIONS[0]).expect("version 1");
        conn.execute_batch(
            "PRAGMA user_version = 1; INSERT INTO flow_run (id, flow, version, parameters, state, created_at, \
             last_event_at, pid, host, heartbeat_at) VALUES ('r1', 'f', 'v', '{}', 'Success', 1, 1, 1, 'h', 1);",
        )
        .expect("a run");
        migrate(&mut conn, &path).expect("migrates");
        let v: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("a version");
        assert_eq!(v, VERSION);
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .expect("the tables");
        assert_eq!(
            names,
            [
                "flow",
                "flow_run",
                "log",
                "schedule_pause",
                "server",
                "state_events",
                "task_run"
            ]
        );
        let run: String = conn
            .query_row("SELECT id FROM flow_run", [], |r| r.get(0))
            .expect("kept");
        assert_eq!(run, "r1");
    }

    #[test]
    fn a_newer_database_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("h.db");
        let mut conn = Connection::open(&path).expect("opens");
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .expect("set up");
        let err = migrate(&mut conn, &path).expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "the run history {} was written by a newer tideflow (schema version 99; this one knows up to {VERSION}): \
                 upgrade tideflow, or point TIDEFLOW_HOME at another folder",
                path.display()
            )
        );
        let v: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("a version");
        assert_eq!(v, 99);
        let tables: u32 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .expect("counted");
        assert_eq!(tables, 1, "nothing was created");
    }
}
