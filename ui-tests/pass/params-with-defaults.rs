use serde::{Deserialize, Serialize};
use tideflow::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    depth: u32,
}

#[task]
fn run(n: u64, name: String, ratio: f64, tags: Vec<String>, settings: Settings, on: bool) -> String {
    format!("{n} {name} {ratio} {tags:?} {settings:?} {on}")
}

const DEFAULT_N: u64 = 10;

flow! {
    pub fn with_params(
        n: u64 = DEFAULT_N,
        name: String = "report".into(),
        ratio: f64 = 0.5,
        tags: Vec<String> = vec!["a".to_owned(), "b".to_owned()],
        settings: Settings = Settings { depth: 2 },
        on: bool = true,
    ) -> String {
        run(n, name, ratio, tags, settings, on)
    }

    /// A parameter may be the flow's output.
    pub fn echo(text: String = String::from("hello")) -> String {
        text
    }

    /// A parameter nobody uses still belongs to the flow.
    pub fn unused(n: u64 = 1, other: u32 = 2) -> String {
        run(n, "x".to_owned(), 1.0, Vec::new(), Settings { depth: 0 }, false)
    }
}

fn main() {
    let _ = with_params().with_param("n", 3);
}
