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
///
/// # Branches
///
/// `if` branches on a `bool` parameter or a task's `bool` result (a binding, a task call,
/// or `!` of one); `else if` chains and nested `if`s work, and a branch's bindings end
/// with it. The branch whose condition does not select it ends `Skipped`: its gate task
/// (`if flag`, `else flag` in runs and graphs) skips, and so does every task call in it,
/// whatever its trigger options, with skips propagating downstream as usual.
/// An `if` whose value is used needs an `else` and branches that end with a value of one
/// type (a task call, a binding or a constant); its merge task (named by the binding, or
/// `merge flag`) gives the value of the branch that ran, fails (`TriggerFailed`) when that
/// branch ended without a value, and is skipped when no branch ran.
///
/// ```ignore
/// flow! {
///     pub fn report(n: u64 = 500, verbose: bool = false) -> String {
///         let size = if is_big(n) { shrink(n) } else { grow(n) };
///         if verbose {
///             log_size(size);
///         }
///         describe(size)
///     }
/// }
/// ```
///
/// Anything else as a condition (`n > 2`, `name.is_empty()`) is a compile error: compute
/// it in a task that returns `bool`. `match`, `if let` and loops are not flow syntax.
#[proc_macro]
pub fn flow(input: TokenStream) -> TokenStream {
    flow::expand(input.into()).into()
}
