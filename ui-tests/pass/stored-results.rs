//! Caching and persistence options, and the run API around them.

use tideflow::prelude::*;

#[task(cache_for = "1h")]
fn fetch(url: String) -> String {
    url
}

#[task(cache_key = "word-count", cache_for = "30m")]
fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[task(persist, max_retries = 2)]
fn parse(text: String) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

#[task(persist = false)]
fn scratch(lines: Vec<String>) -> usize {
    lines.len()
}

flow! {
    fn pages(url: String = "https://example.invalid".to_owned()) -> usize {
        let text = fetch(url);
        let words = count_words(text);
        let lines = parse(text);
        scratch(lines).after(words)
    }
}

async fn restart_later(id: tideflow::FlowRunId) -> Result<usize, FlowError> {
    let flow = pages()
        .persist_results()
        .result_store(ResultStore::local("target/results"));
    let run = flow.restart(id).await?;
    run.into_output()
}

fn main() {
    let _ = restart_later;
}
