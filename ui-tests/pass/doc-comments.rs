//! Doc comments on flows and tasks, under `#![deny(missing_docs)]`.
#![deny(missing_docs)]

use tideflow::prelude::*;

/// Doubles.
#[task]
pub fn double(x: u64) -> u64 {
    x * 2
}

/// Documented task with options.
///
/// Several paragraphs.
#[task(max_retries = 1)]
pub fn triple(x: u64) -> u64 {
    x * 3
}

flow! {
    /// Doubles then triples.
    ///
    /// The description becomes the flow's description.
    pub fn documented(x: u64 = 1) -> u64 {
        let d = double(x);
        triple(d)
    }

    #[doc = "An attribute-form doc."]
    pub fn attribute_doc() -> u64 {
        double(2)
    }
}

fn main() {
    let _ = documented().description();
}
