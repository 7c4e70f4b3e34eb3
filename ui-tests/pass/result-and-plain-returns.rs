use std::fmt;

use tideflow::prelude::*;

#[derive(Debug)]
pub struct ParseFailed(String);

impl fmt::Display for ParseFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot parse {:?}", self.0)
    }
}

impl std::error::Error for ParseFailed {}

/// A plain return.
#[task]
fn text() -> String {
    "42".to_owned()
}

/// `Result` with the user's own error type.
#[task]
fn parse(s: String) -> Result<u64, ParseFailed> {
    s.parse().map_err(|_| ParseFailed(s))
}

/// `Result` with a std error type.
#[task]
fn parse_std(s: String) -> Result<u64, std::num::ParseIntError> {
    s.parse()
}

/// `Result` with `TaskError` itself.
#[task]
fn check(n: u64) -> Result<u64, TaskError> {
    if n == 0 {
        return Err(TaskError::skip("nothing to do"));
    }
    Ok(n)
}

/// `Result` through a module path.
#[task]
fn check_again(n: u64) -> std::result::Result<u64, TaskError> {
    Ok(n)
}

/// Returns nothing.
#[task]
fn log(n: u64) {
    let _ = n;
}

/// Returns unit explicitly.
#[task]
fn log_unit(n: u64) -> () {
    let _ = n;
}

flow! {
    pub fn returns() -> u64 {
        let s = text();
        let a = parse(s);
        let b = parse_std(s);
        let c = check(a);
        log(b);
        log_unit(c);
        check_again(c)
    }
}

fn main() {}
