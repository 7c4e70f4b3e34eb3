use tideflow::prelude::*;

#[task(name = "load-numbers")]
fn load() -> Vec<u64> {
    vec![1, 2, 3]
}

#[task(max_retries = 3, retry_delay = "2s")]
fn flaky(x: u64) -> u64 {
    x
}

#[task(retry_delay = "1m30s", max_retries = 0)]
fn slow(x: u64) -> u64 {
    x
}

#[task(retry_delay = "500ms")]
fn quick(x: u64) -> u64 {
    x
}

#[task(trigger = all_failed)]
fn on_failure() -> String {
    "failed".into()
}

#[task(trigger = "any_successful")]
fn on_any(x: u64) -> u64 {
    x
}

#[task(trigger = always_run, skip_on_upstream_skip = false)]
fn cleanup(x: u64) {
    let _ = x;
}

#[task(trigger = all_successful, skip_on_upstream_skip = true)]
fn strict(x: u64) -> u64 {
    x
}

#[task(trigger = all_finished)]
fn finished(x: u64) -> u64 {
    x
}

#[task(trigger = any_failed)]
fn alarm(x: u64) -> u64 {
    x
}

#[task(tags = ["db"])]
fn store(x: u64) -> u64 {
    x
}

#[task(tags = ["db", "io"])]
fn store_more(x: u64) -> u64 {
    x
}

#[task(tags = "single")]
fn store_single(x: u64) -> u64 {
    x
}

#[task(tags = [])]
fn untagged(x: u64) -> u64 {
    x
}

#[task(local)]
fn local_only(x: u64) -> u64 {
    x
}

#[task(
    name = "everything",
    max_retries = 2,
    retry_delay = "10ms",
    trigger = all_finished,
    skip_on_upstream_skip = false,
    tags = ["db", "io"],
    local,
)]
async fn everything(x: u64) -> Result<u64, TaskError> {
    Ok(x)
}

#[task()]
fn empty_options(x: u64) -> u64 {
    x
}

flow! {
    pub fn options() -> u64 {
        let xs = load();
        let a = flaky.map(xs);
        let b = slow(3);
        let c = quick(b);
        let d = on_any(c);
        cleanup(d);
        let e = strict(d);
        let f = finished(e);
        let g = alarm(f);
        let h = store(g);
        let i = store_more(h);
        let j = store_single(i);
        let k = untagged(j);
        let l = local_only(k);
        let m = empty_options(l);
        let failure = on_failure();
        everything(m)
    }
}

fn main() {}
