use tideflow::prelude::*;

flow! {}

fn main() {}
