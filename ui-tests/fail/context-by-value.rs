use tideflow::prelude::*;

#[task]
fn who(ctx: TaskContext) -> String {
    ctx.task_name().to_owned()
}

fn main() {}
