//! Collects errors so a user sees every mistake at once.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Errors found while parsing and checking one macro input.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Option<syn::Error>,
}

impl Ctxt {
    /// An error on `tokens`.
    pub(crate) fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// An error on one span.
    pub(crate) fn error_at(&mut self, span: proc_macro2::Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// A parse error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.errors {
            Some(all) => all.combine(error),
            None => self.errors = Some(error),
        }
    }

    /// `compile_error!`s for everything collected, if anything.
    pub(crate) fn into_compile_errors(self) -> Option<TokenStream> {
        self.errors.map(|e| e.to_compile_error())
    }

    /// How many errors were collected.
    pub(crate) fn count(&self) -> usize {
        self.errors.as_ref().map_or(0, |e| e.clone().into_iter().count())
    }

    /// Whether anything was collected.
    pub(crate) fn has_errors(&self) -> bool {
        self.errors.is_some()
    }
}
