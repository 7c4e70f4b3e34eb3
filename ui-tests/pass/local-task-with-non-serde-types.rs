use std::sync::Arc;

use tideflow::prelude::*;

/// Neither `Serialize` nor `Deserialize`: fine for a local task.
#[derive(Clone, Debug)]
pub struct Handle {
    id: u64,
    shared: Arc<Vec<u8>>,
}

#[task(local)]
fn open(id: u64) -> Handle {
    Handle { id, shared: Arc::new(vec![1, 2, 3]) }
}

#[task(local)]
fn size(h: &Handle) -> usize {
    h.shared.len() + h.id as usize
}

#[task(local, max_retries = 1)]
async fn reopen(h: Handle) -> Result<Handle, TaskError> {
    Ok(h)
}

#[task(local)]
fn sizes(hs: Vec<Handle>) -> usize {
    hs.len()
}

flow! {
    pub fn local_handles() -> usize {
        let h = open(1);
        let again = reopen(h);
        let n = size(again);
        let many = open.map([1, 2, 3]);
        sizes(many)
    }
}

fn main() {}
