//! The syntax tree of a `flow!` block: each flow as written, keeping the user's tokens
//! and spans so that the analysis and the expansion can point at them.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Ident, Token, Type, Visibility};

/// The flows of one `flow!` block.
pub(super) struct Flows(pub(super) Vec<FlowDecl>);

impl Parse for Flows {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut flows = Vec::new();
        while !input.is_empty() {
            flows.push(input.parse()?);
        }
        if flows.is_empty() {
            return Err(
                input.error("`flow!` declares flows: `flow! { pub fn my_flow(n: u64 = 10) -> u64 { .. } }`")
            );
        }
        Ok(Flows(flows))
    }
}

/// `/// docs  pub fn name(param: T = default, ..) -> Out { statements }`
pub(super) struct FlowDecl {
    pub(super) attrs: Vec<Attribute>,
    pub(super) vis: Visibility,
    pub(super) fn_token: Token![fn],
    pub(super) name: Ident,
    pub(super) params: Vec<FlowParam>,
    pub(super) output: Option<Type>,
    pub(super) body: Vec<syn::Stmt>,
    pub(super) brace_span: Span,
}

/// `name: T = default`
pub(super) struct FlowParam {
    pub(super) name: Ident,
    pub(super) ty: Type,
    pub(super) default: Option<Expr>,
}

impl Parse for FlowParam {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let ty: Type = input.parse()?;
        let default = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(FlowParam { name, ty, default })
    }
}

impl Parse for FlowDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        if input.peek(Token![async]) {
            return Err(input.error(
                "a flow is declared with `fn`, not `async fn`: its function returns the flow, and `.run().await` runs it",
            ));
        }
        let fn_token: Token![fn] = input.parse()?;
        let name: Ident = input.parse()?;
        let content;
        syn::parenthesized!(content in input);
        let params = Punctuated::<FlowParam, Token![,]>::parse_terminated(&content)?
            .into_iter()
            .collect();
        let output = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        let block: syn::Block = input.parse()?;
        Ok(FlowDecl {
            attrs,
            vis,
            fn_token,
            name,
            params,
            output,
            body: block.stmts,
            brace_span: block.brace_token.span.join(),
        })
    }
}
