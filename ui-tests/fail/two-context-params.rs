use tideflow::prelude::*;

#[task]
fn who(a: &TaskContext, b: &TaskContext) -> String {
    format!("{}{}", a.task_name(), b.task_name())
}

fn main() {}
