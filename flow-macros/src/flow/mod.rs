//! `flow!`: parse the flow declarations, resolve what each argument is from syntax, and
//! expand into a graph builder whose trait checks let rustc verify every type.
//!
//! The macro knows each argument's *kind* from syntax alone: a flow parameter or
//! `let x = task(..)` is a single value, `let xs = task.map(..)` a mapped one, anything
//! that uses no binding a constant. It emits a different check per kind, spanned at the
//! user's token; rustc checks the types.
//!
//! An `if` on a `bool` becomes a gate task per branch (`if flag`, `else flag`) that every
//! task call in the branch runs after, so the branch that is not taken is skipped; an
//! `if` whose value is used also becomes a merge task that passes on the value of the
//! branch that ran. Each branch is expanded in a Rust block of its own, so its bindings
//! end with it, as in Rust.
//!
//! Three stages, one module each: [`parse`] reads the block into [`parse::FlowDecl`]s,
//! [`analysis`] resolves names and checks each flow into its [`steps`], and [`expand`]
//! generates the code. Each flow goes through them on its own: one with a syntax error
//! or a failed check is reported and replaced by a stub with its name and output type,
//! and the other flows of the block expand as usual, so that a mistake in one flow does
//! not turn into errors wherever the others are used.

mod analysis;
mod expand;
mod parse;
mod serving;
mod steps;

use proc_macro2::{Span, TokenStream};
use quote::quote;

use self::parse::{FlowBlock, FlowDecl, Item};

/// Expands a `flow!` block, flow by flow.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    if input.is_empty() {
        return syn::Error::new(
            Span::call_site(),
            "`flow!` is empty: declare a flow in it, like `flow! { pub fn my_flow(n: u64 = 10) -> u64 { .. } }`",
        )
        .to_compile_error();
    }
    let block = match syn::parse2::<FlowBlock>(input) {
        Ok(block) => block,
        Err(e) => return e.to_compile_error(),
    };
    block
        .0
        .iter()
        .map(|item| match item {
            Item::Flow(flow) => expand_flow(flow),
            Item::Broken(error, Some(sig)) => expand::broken(sig, error),
            // Not even a name to stand in for.
            Item::Broken(error, None) => error.to_compile_error(),
        })
        .collect()
}

fn expand_flow(flow: &FlowDecl) -> TokenStream {
    match (analysis::analyse(flow), serving::read(flow)) {
        (Ok(analysed), Ok(serving)) => expand::generate(flow, &analysed, &serving),
        (analysed, serving) => {
            let errors: TokenStream = [analysed.err(), serving.err()].into_iter().flatten().collect();
            // Still emit the flow function so its callers type-check.
            let fallback = expand::fallback(flow);
            quote! { #errors #fallback }
        }
    }
}
