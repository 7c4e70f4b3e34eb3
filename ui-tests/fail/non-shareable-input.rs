use tideflow::prelude::*;

use std::rc::Rc;

#[task(local)]
fn length(s: Rc<String>) -> usize {
    s.len()
}

fn main() {}
