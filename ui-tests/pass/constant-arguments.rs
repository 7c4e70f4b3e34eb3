use serde::{Deserialize, Serialize};
use tideflow::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Window {
    size: u32,
}

#[task]
fn window(name: String, sizes: Vec<u32>, w: Window, limit: u64, ratio: f64, on: bool, c: char) -> String {
    format!("{name} {sizes:?} {w:?} {limit} {ratio} {on} {c}")
}

#[task]
fn pair(p: (u64, String)) -> u64 {
    p.0
}

#[task]
fn opt(x: Option<u64>) -> u64 {
    x.unwrap_or(0)
}

#[task]
fn neg(x: i64) -> i64 {
    -x
}

const LIMIT: u64 = 100;

// Inside `flow!`, a snake_case call is a task call: a plain function call is wrapped in a block.
fn make_window() -> Window {
    Window { size: 3 }
}

flow! {
    pub fn constants() -> String {
        let a = window("name".into(), vec![1, 2, 3], Window { size: 4 }, LIMIT, 0.25, true, 'x');
        let b = window(String::from("two"), Vec::new(), { make_window() }, u64::MAX, 1e-3, false, 'y');
        let c = window("three".to_string(), (1..4).collect(), Window { size: 1 + 1 }, 2 * LIMIT, -1.5, !true, '\n');
        let d = pair((1, "literal tuple".to_owned()));
        let e = opt(Some(3));
        let f = opt(None);
        let g = neg(-7);
        a
    }
}

fn main() {}
