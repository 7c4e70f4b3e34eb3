use tideflow::prelude::*;

fn is_transient(message: &str) -> bool {
    message.contains("reset")
}

#[task(max_retries = 3, retry_on = is_transient)]
fn fetch() -> Result<u64, TaskError> {
    Ok(1)
}

fn main() {}
