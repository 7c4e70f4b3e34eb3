//! Every retry-policy and timeout option, sync and async.
use tideflow::prelude::*;

fn is_transient(e: &TaskError) -> bool {
    e.downcast_ref::<std::io::Error>().is_some()
}

#[task(
    max_retries = 5,
    retry_delay = "500ms",
    retry_backoff = 2,
    retry_max_delay = "1m",
    retry_jitter = 0.2,
    retry_on = is_transient,
    timeout = "30s"
)]
fn fetch() -> Result<u64, TaskError> {
    Ok(1)
}

#[task(timeout = "1m30s", max_retries = 1, retry_on = self::is_transient)]
async fn fetch_async(x: u64) -> Result<u64, TaskError> {
    Ok(x)
}

flow! {
    fn policies() -> u64 {
        fetch_async(fetch())
    }
}

fn main() {
    let _ = policies();
}
