use serde::{Deserialize, Serialize};
use tideflow::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    rows: Vec<u64>,
}

#[task]
fn load(n: u64) -> Table {
    Table { rows: (0..n).collect() }
}

/// Borrows the upstream result instead of cloning it.
#[task]
fn count(table: &Table) -> usize {
    table.rows.len()
}

/// The context first, then a borrowed and an owned parameter.
#[task]
fn label(ctx: &TaskContext, table: &Table, prefix: String) -> String {
    format!("{prefix} {} rows in {} (attempt {})", table.rows.len(), ctx.task_name(), ctx.attempt())
}

/// The context in the middle of an async task.
#[task]
async fn note(n: usize, ctx: &TaskContext, suffix: &String) -> String {
    format!("{n}{suffix} at {:?}", ctx.map_index())
}

/// Only the context.
#[task]
fn whoami(ctx: &TaskContext) -> String {
    ctx.full_name()
}

/// A borrowed element of a mapped call.
#[task]
fn row_len(t: &Table) -> usize {
    t.rows.len()
}

flow! {
    pub fn borrowing(n: u64 = 4) -> String {
        let table = load(n);
        let c = count(table);
        let l = label(table, "table:".to_string());
        let me = whoami();
        let tables = load.map([1, 2]);
        let lens = row_len.map(tables);
        note(c, l)
    }
}

fn main() {}
