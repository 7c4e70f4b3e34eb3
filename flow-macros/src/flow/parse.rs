//! The syntax tree of a `flow!` block: each flow as written, keeping the user's tokens
//! and spans so that the analysis and the expansion can point at them.
//!
//! Each flow of a block parses on its own. A flow with a syntax error ends at its first
//! top-level `{ .. }` (its body), so the flows after it still parse; what can be read of
//! its signature lets a stub stand in for it, so that its callers do not add errors of
//! their own.

use proc_macro2::{Delimiter, Spacing, Span, TokenTree};
use syn::parse::discouraged::Speculative;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Ident, Token, Type, Visibility};

/// The flows of one `flow!` block, each parsed on its own: a syntax error in one flow
/// leaves the others intact.
pub(super) struct FlowBlock(pub(super) Vec<Item>);

/// One flow of a block, as far as it parsed.
pub(super) enum Item {
    Flow(FlowDecl),
    /// A flow with a syntax error: the error, and the flow's signature as far as it can
    /// be read (`None` when not even its name can be found).
    Broken(syn::Error, Option<BrokenSignature>),
}

impl Parse for FlowBlock {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut items = Vec::new();
        while !input.is_empty() {
            // Each flow is parsed on a fork, so that one that fails leaves `input` at its
            // start, from where its tokens are skipped.
            let flow = input.fork();
            match flow.parse::<FlowDecl>() {
                Ok(decl) => {
                    input.advance_to(&flow);
                    items.push(Item::Flow(decl));
                }
                Err(error) => {
                    let tokens = skip_flow(input)?;
                    items.push(Item::Broken(error, BrokenSignature::read(&tokens)));
                }
            }
        }
        if items.is_empty() {
            return Err(
                input.error("`flow!` declares flows: `flow! { pub fn my_flow(n: u64 = 10) -> u64 { .. } }`")
            );
        }
        Ok(FlowBlock(items))
    }
}

/// `/// docs  pub fn name(param: T = default, ..) -> Out { statements }`
pub(super) struct FlowDecl {
    pub(super) attrs: Vec<Attribute>,
    /// `#[schedule(..)]` and `#[serve(..)]`: read by `serving`, not emitted.
    pub(super) serving: Vec<Attribute>,
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
        let (serving, attrs) = input
            .call(Attribute::parse_outer)?
            .into_iter()
            .partition(is_serving);
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
            serving,
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

/// Consumes the tokens of a flow that does not parse: up to and including its first
/// top-level `{ .. }`, which is its body, or to the end of the block.
fn skip_flow(input: ParseStream<'_>) -> syn::Result<Vec<TokenTree>> {
    let mut tokens = Vec::new();
    while !input.is_empty() {
        let token: TokenTree = input.parse()?;
        let body = matches!(&token, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace);
        tokens.push(token);
        if body {
            break;
        }
    }
    Ok(tokens)
}

/// What can be read of the signature of a flow that does not parse, for a stub to
/// stand in for it.
pub(super) struct BrokenSignature {
    pub(super) attrs: Vec<Attribute>,
    pub(super) vis: Visibility,
    pub(super) fn_token: Token![fn],
    pub(super) name: Ident,
    /// The declared output (`()` when there is no `-> ..`); `None` when it cannot be
    /// read.
    pub(super) output: Option<Type>,
}

impl BrokenSignature {
    /// Reads the tokens of a flow around its syntax error: the name is the identifier
    /// after the first `fn`; the attributes and the visibility are those before it that
    /// parse; the output is the type between `->` and the body, if it parses.
    fn read(tokens: &[TokenTree]) -> Option<BrokenSignature> {
        let at = tokens
            .iter()
            .position(|t| matches!(t, TokenTree::Ident(i) if i == "fn"))?;
        let name = syn::parse2::<Ident>(tokens.get(at + 1)?.clone().into()).ok()?;
        let head = &tokens[..at];
        Some(BrokenSignature {
            attrs: read_attrs(head),
            vis: read_vis(head),
            fn_token: Token![fn](tokens[at].span()),
            name,
            output: read_output(&tokens[at + 2..]),
        })
    }
}

/// Every `#[..]` before `fn` that parses as an attribute.
fn read_attrs(head: &[TokenTree]) -> Vec<Attribute> {
    head.windows(2)
        .filter(|pair| {
            matches!(pair, [TokenTree::Punct(p), TokenTree::Group(g)]
                if p.as_char() == '#' && g.delimiter() == Delimiter::Bracket)
        })
        .filter_map(|pair| Attribute::parse_outer.parse2(pair.iter().cloned().collect()).ok())
        .flatten()
        .filter(|a| !is_serving(a))
        .collect()
}

/// `#[schedule(..)]` or `#[serve(..)]`: what `serve` reads of a flow, not an attribute of
/// its function.
pub(super) fn is_serving(attr: &Attribute) -> bool {
    attr.path().is_ident("schedule") || attr.path().is_ident("serve")
}

/// The last `pub` before `fn`, with its `(crate)`, `(super)`, .. if that parses.
fn read_vis(head: &[TokenTree]) -> Visibility {
    let Some(at) = head
        .iter()
        .rposition(|t| matches!(t, TokenTree::Ident(i) if i == "pub"))
    else {
        return Visibility::Inherited;
    };
    let restricted = head[at..].iter().take(2).cloned().collect();
    syn::parse2::<Visibility>(restricted)
        .or_else(|_| syn::parse2::<Visibility>(head[at].clone().into()))
        .unwrap_or(Visibility::Inherited)
}

/// The output type, from the tokens after the name: the parameter list, `-> Type`, the
/// body. `None` when anything else is between the parameters and the body.
fn read_output(tokens: &[TokenTree]) -> Option<Type> {
    let mut sig = tokens;
    if let [rest @ .., TokenTree::Group(body)] = sig {
        if body.delimiter() == Delimiter::Brace {
            sig = rest;
        }
    }
    if let [TokenTree::Group(params), rest @ ..] = sig {
        if params.delimiter() == Delimiter::Parenthesis {
            sig = rest;
        }
    }
    match sig {
        [] => Some(syn::parse_quote!(())),
        [TokenTree::Punct(dash), TokenTree::Punct(gt), ty @ ..]
            if dash.as_char() == '-' && dash.spacing() == Spacing::Joint && gt.as_char() == '>' =>
        {
            syn::parse2(ty.iter().cloned().collect()).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use quote::ToTokens;

    use super::*;

    fn block(src: &str) -> Vec<Item> {
        syn::parse_str::<FlowBlock>(src).expect("a block").0
    }

    /// The stub's signature of a broken flow, as text: `vis fn name -> output`.
    fn stub(item: &Item) -> String {
        let Item::Broken(_, Some(sig)) = item else {
            panic!("not a broken flow with a name");
        };
        let output = match &sig.output {
            Some(ty) => ty.to_token_stream().to_string(),
            None => "?".to_owned(),
        };
        let vis = sig.vis.to_token_stream().to_string();
        format!("{vis} fn {} -> {output} ({} attrs)", sig.name, sig.attrs.len())
            .trim()
            .to_owned()
    }

    #[test]
    fn a_broken_flow_leaves_the_next_one_intact() {
        let items = block("pub fn a(n u64 = 1) -> u64 { f(n) } pub fn b(n: u64 = 1) -> u64 { f(n) }");
        assert_eq!(items.len(), 2);
        assert_eq!(stub(&items[0]), "pub fn a -> u64 (0 attrs)");
        assert!(matches!(&items[1], Item::Flow(flow) if flow.name == "b"));
    }

    #[test]
    fn the_signature_of_a_broken_flow_is_read_as_far_as_it_parses() {
        let items = block(
            "/// Docs.
             pub(crate) fn a(n: u64 = 1,,) -> Vec<u64> { f(n) }
             pub(crat) fn b() -> u64 { f() }
             fn c(n: u64 1) { f(n) }
             pub async fn d() -> u64 { f() }
             pub fn e() -> Vec<u64>> { f() }
             pub fn g() u64 { f() }
             pub fn h<T>() -> T { f() }",
        );
        let stubs: Vec<String> = items.iter().map(stub).collect();
        assert_eq!(
            stubs,
            [
                "pub (crate) fn a -> Vec < u64 > (1 attrs)",
                "pub fn b -> u64 (0 attrs)",
                "fn c -> () (0 attrs)",
                "pub fn d -> u64 (0 attrs)",
                "pub fn e -> ? (0 attrs)",
                "pub fn g -> ? (0 attrs)",
                "pub fn h -> ? (0 attrs)",
            ]
        );
    }

    #[test]
    fn a_broken_flow_without_a_name_is_only_its_error() {
        let items = block("pub a(n: u64 = 1) -> u64 { f(n) } fn match() {} pub fn b() -> u64 { f() }");
        assert!(matches!(&items[0], Item::Broken(e, None) if e.to_string() == "expected `fn`"));
        assert!(matches!(&items[1], Item::Broken(_, None)));
        assert!(matches!(&items[2], Item::Flow(flow) if flow.name == "b"));
    }

    #[test]
    fn a_broken_flow_without_a_body_runs_to_the_next_body() {
        let items = block("pub fn a() -> u64 pub fn b() -> u64 { f() } pub fn c() { f() }");
        assert_eq!(items.len(), 2);
        assert_eq!(stub(&items[0]), "pub fn a -> ? (0 attrs)");
        assert!(matches!(&items[1], Item::Flow(flow) if flow.name == "c"));
    }
}
