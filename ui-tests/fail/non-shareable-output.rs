use tideflow::prelude::*;

use std::rc::Rc;

#[task(local)]
fn shared() -> Rc<String> {
    Rc::new("not Send".to_owned())
}

fn main() {}
