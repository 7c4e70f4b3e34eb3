//! Procedural macros of [tideflow](https://docs.rs/tideflow): `#[task]` and `flow!`.
//!
//! Each macro parses the user's tokens into an AST that keeps their spans, checks what
//! it can see from syntax (unknown options, malformed durations, `unmapped` outside a
//! `.map(..)`), and expands into code whose trait bounds let rustc check the types, with
//! every error pointing at the user's own token. Use them through the `tideflow` crate.

mod ctxt;
mod duration;
mod flow;
mod task;

use proc_macro::TokenStream;

/// The path of the facade's support module for generated code, with every token at
/// `span`, so a check quoted at a user's token stays entirely at that token.
pub(crate) fn private_at(span: proc_macro2::Span) -> proc_macro2::TokenStream {
    quote::quote_spanned!(span=> ::tideflow::__private)
}

/// Turns a function into a task. See the `tideflow` crate's documentation.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(args.into(), item.into()).into()
}

/// Declares flows: typed parameters, task calls wired into a graph, a typed output. See
/// the `tideflow` crate's documentation.
#[proc_macro]
pub fn flow(input: TokenStream) -> TokenStream {
    flow::expand(input.into()).into()
}
