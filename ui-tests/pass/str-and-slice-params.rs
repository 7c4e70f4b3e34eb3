//! `&str` and `&[T]` parameters read an upstream `String` or `Vec<T>` without a clone.
use tideflow::prelude::*;

#[task]
fn words() -> Vec<String> {
    vec!["a".into(), "bb".into()]
}

#[task]
fn name() -> String {
    "tide".into()
}

#[task]
fn longest(xs: &[String], prefix: &str) -> String {
    let best = xs.iter().max_by_key(|w| w.len()).cloned().unwrap_or_default();
    format!("{prefix}{best}")
}

#[task]
async fn shout(s: &str) -> String {
    s.to_uppercase()
}

flow! {
    fn f() -> String {
        let w = words();
        let n = name();
        let l = longest(w, n);
        shout(l)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(f().run().await.output(), Ok(&"TIDEBB".to_owned()));
}
