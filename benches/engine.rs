//! Per-task engine overhead: `cargo bench --bench engine`.
//!
//! Three workloads (see `benches/workloads/mod.rs`), each with a trivial sync task and a
//! trivial async task as `add1`, next to its floor (the same arithmetic in a plain loop):
//!
//! - `map_100k`: `numbers(100_000)` → `add1.map`, the flow's output being the mapped results
//!   (100,001 task runs);
//! - `chain_10k`: 10,000 `add1` tasks, each reading the previous one's result (10,000 runs);
//! - `mapreduce_100k`: `numbers(100_000)` → `add1.map` → `add1.map` → `total` (200,002 runs).
//!
//! `engine` runs on the default `LocalExecutor`, `sequential` on the `SequentialExecutor`
//! (one task run at a time: the scheduler's own cost, without threads). Flows run on a
//! multi-thread tokio runtime with 2 workers, driven by `block_on` as `#[tokio::main]`
//! drives a user's `main`. One iteration = one whole flow run: build nothing, run, check
//! the output (a wrong one panics), drop the run record.
//!
//! Reading the output: every bench counts items, and divan prints items per second.
//! An engine bench's items are its task runs, so **µs per task = 1 / throughput**; a
//! floor's items are the workload's elements, so **ratio to floor = floor throughput /
//! engine throughput** (per-task time over the floor's per-element time).
//!
//! Why divan rather than criterion: it builds in a fraction of criterion's time on a
//! 2-core machine (no plotters, no rayon), takes `args` (sync/async) and per-item counters
//! as attributes, and its one-line-per-case table is the report this needs. An iteration
//! here is a whole flow run (milliseconds), so a fixed 20 samples of one iteration each
//! keeps the whole suite at 10–30 s on 2 cores; override with `--sample-count`.
//!
//! Filter by name as with any divan bench: `cargo bench --bench engine -- map_100k`.

use std::sync::LazyLock;

use divan::counter::ItemsCount;
use divan::Bencher;
use tideflow::{Executor, LocalExecutor, SequentialExecutor};
use tokio::runtime::Runtime;

mod workloads;

use workloads::{Body, Kind, Workload};

const WIDE: u64 = 100_000;
const DEEP: u64 = 10_000;
const BODIES: [Body; 2] = [Body::Sync, Body::Async];

static RUNTIME: LazyLock<Runtime> = LazyLock::new(workloads::runtime);

fn main() {
    divan::main();
}

fn engine(bencher: Bencher, kind: Kind, n: u64, body: Body, executor: impl Into<Executor>) {
    let workload = Workload::new(kind, n, body, executor);
    // One run outside the samples: a wrong output fails before anything is timed.
    RUNTIME.block_on(workload.run());
    bencher
        .counter(ItemsCount::new(workload.task_runs()))
        .bench_local(|| RUNTIME.block_on(workload.run()));
}

fn floor(bencher: Bencher, kind: Kind, n: u64) {
    bencher
        .counter(ItemsCount::new(n))
        .bench_local(|| workloads::floor(kind, n));
}

#[divan::bench_group(sample_count = 20, sample_size = 1)]
mod map_100k {
    use super::*;

    #[divan::bench(args = BODIES)]
    fn engine(bencher: Bencher, body: Body) {
        super::engine(bencher, Kind::Map, WIDE, body, LocalExecutor::new());
    }

    #[divan::bench(args = BODIES)]
    fn sequential(bencher: Bencher, body: Body) {
        super::engine(bencher, Kind::Map, WIDE, body, SequentialExecutor);
    }

    #[divan::bench(sample_count = 100, sample_size = 10)]
    fn floor(bencher: Bencher) {
        super::floor(bencher, Kind::Map, WIDE);
    }
}

#[divan::bench_group(sample_count = 20, sample_size = 1)]
mod chain_10k {
    use super::*;

    #[divan::bench(args = BODIES)]
    fn engine(bencher: Bencher, body: Body) {
        super::engine(bencher, Kind::Chain, DEEP, body, LocalExecutor::new());
    }

    #[divan::bench(args = BODIES)]
    fn sequential(bencher: Bencher, body: Body) {
        super::engine(bencher, Kind::Chain, DEEP, body, SequentialExecutor);
    }

    #[divan::bench(sample_count = 100, sample_size = 10)]
    fn floor(bencher: Bencher) {
        super::floor(bencher, Kind::Chain, DEEP);
    }
}

#[divan::bench_group(sample_count = 20, sample_size = 1)]
mod mapreduce_100k {
    use super::*;

    #[divan::bench(args = BODIES)]
    fn engine(bencher: Bencher, body: Body) {
        super::engine(bencher, Kind::MapReduce, WIDE, body, LocalExecutor::new());
    }

    #[divan::bench(args = BODIES)]
    fn sequential(bencher: Bencher, body: Body) {
        super::engine(bencher, Kind::MapReduce, WIDE, body, SequentialExecutor);
    }

    #[divan::bench(sample_count = 100, sample_size = 10)]
    fn floor(bencher: Bencher) {
        super::floor(bencher, Kind::MapReduce, WIDE);
    }
}
