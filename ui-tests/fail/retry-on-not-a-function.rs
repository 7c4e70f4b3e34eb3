use tideflow::prelude::*;

#[task(max_retries = 3, retry_on = "transient")]
fn fetch() -> Result<u64, TaskError> {
    Ok(1)
}

fn main() {}
