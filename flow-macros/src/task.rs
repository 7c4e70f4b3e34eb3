//! `#[task]`: parse the options and the function, check them, expand the companion.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, FnArg, Ident, ItemFn, Lit, LitStr, Pat, ReturnType, Token, Type};

use crate::ctxt::Ctxt;
use crate::duration;

const OPTIONS: &str = "`name`, `max_retries`, `retry_delay`, `retry_backoff`, `retry_max_delay`, \
     `retry_jitter`, `retry_on`, `timeout`, `trigger`, `skip_on_upstream_skip`, `tags`, `cache_for`, \
     `cache_key`, `persist`, `batch` and `local`";
const TRIGGERS: &[(&str, &str)] = &[
    ("all_successful", "AllSuccessful"),
    ("all_finished", "AllFinished"),
    ("always_run", "AllFinished"),
    ("any_successful", "AnySuccessful"),
    ("any_failed", "AnyFailed"),
    ("all_failed", "AllFailed"),
];

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let message = match syn::parse2::<syn::Item>(item.clone()) {
                Ok(syn::Item::Fn(_)) | Err(_) => e.to_string(),
                Ok(_) => {
                    "`#[task]` goes on a function: `#[task] fn load(path: String) -> Data { .. }`".to_owned()
                }
            };
            let mut out = syn::Error::new(e.span(), message).to_compile_error();
            out.extend(item);
            return out;
        }
    };
    let mut cx = Ctxt::default();
    let options = Options::parse(&mut cx, args);
    let sig = Signature::parse(&mut cx, &func);
    match (cx.into_compile_errors(), sig) {
        (None, Some(sig)) => generate(&func, &options, &sig),
        (errors, _) => {
            // Keep the function so one mistake does not cascade into every call site.
            let mut out = errors.unwrap_or_default();
            out.extend(func.into_token_stream());
            out
        }
    }
}

/// The options written in `#[task(..)]`.
#[derive(Default)]
struct Options {
    name: Option<LitStr>,
    max_retries: Option<u32>,
    retry_delay_nanos: Option<u64>,
    retry_backoff: Option<f64>,
    retry_max_delay_nanos: Option<u64>,
    retry_jitter: Option<f64>,
    retry_on: Option<syn::Path>,
    timeout_nanos: Option<u64>,
    trigger: Option<Ident>,
    skip_on_upstream_skip: Option<bool>,
    tags: Vec<LitStr>,
    local: Option<Ident>,
    cache_for_nanos: Option<u64>,
    cache_key: Option<LitStr>,
    persist: Option<bool>,
    /// `batch = false` (as 1) or `batch = N`, and where it was written.
    batch: Option<u32>,
    batch_key: Option<Ident>,
    /// The option that stores results (`cache_for`, `cache_key` or `persist`), for the
    /// error when the task is also `local`.
    stores: Option<Ident>,
}

/// `key`, `key = value`.
struct OptionArg {
    key: Ident,
    value: Option<Expr>,
}

impl Parse for OptionArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(OptionArg { key, value })
    }
}

impl Options {
    fn parse(cx: &mut Ctxt, args: TokenStream) -> Options {
        let mut options = Options::default();
        let parsed = match Punctuated::<OptionArg, Token![,]>::parse_terminated.parse2(args) {
            Ok(p) => p,
            Err(e) => {
                cx.push(syn::Error::new(
                    e.span(),
                    format!("{e}: task options are written `#[task(max_retries = 3, retry_delay = \"2s\")]`"),
                ));
                return options;
            }
        };
        let mut seen: Vec<String> = Vec::new();
        for arg in parsed {
            let key = arg.key.to_string();
            if seen.contains(&key) {
                cx.error_spanned_by(&arg.key, format!("duplicate task option `{key}`: give it once"));
                continue;
            }
            seen.push(key.clone());
            match key.as_str() {
                "name" => {
                    options.name = string_value(cx, &arg);
                    if let Some(name) = options.name.as_ref().filter(|n| n.value().trim().is_empty()) {
                        cx.error_spanned_by(name, "a task's `name` cannot be empty");
                    }
                }
                "max_retries" => options.max_retries = int_value(cx, &arg),
                "retry_delay" => options.retry_delay_nanos = duration_value(cx, &arg),
                "retry_max_delay" => options.retry_max_delay_nanos = duration_value(cx, &arg),
                "timeout" => {
                    options.timeout_nanos = duration_value(cx, &arg);
                    if options.timeout_nanos == Some(0) {
                        cx.error_spanned_by(&arg.value, "`timeout` must be longer than zero");
                    }
                }
                "retry_backoff" => {
                    options.retry_backoff = float_value(cx, &arg, "retry_backoff = 2.0");
                    if options.retry_backoff.is_some_and(|f| f < 1.0) {
                        cx.error_spanned_by(
                            &arg.value,
                            "`retry_backoff` multiplies each wait: use 1.0 or more (1.0 keeps waits constant)",
                        );
                    }
                }
                "retry_jitter" => {
                    options.retry_jitter = float_value(cx, &arg, "retry_jitter = 0.1");
                    if options.retry_jitter.is_some_and(|j| !(0.0..=1.0).contains(&j)) {
                        cx.error_spanned_by(
                            &arg.value,
                            "`retry_jitter` is the fraction of each wait added or taken at random: from 0.0 to 1.0",
                        );
                    }
                }
                "retry_on" => match require_value(cx, &arg, "retry_on = is_transient") {
                    Some(Expr::Path(p)) if p.qself.is_none() => options.retry_on = Some(p.path.clone()),
                    Some(other) => cx.error_spanned_by(
                        other,
                        "`retry_on` names a function `fn(&TaskError) -> bool` that says which errors to retry: \
                         `retry_on = is_transient`",
                    ),
                    None => {}
                },
                "trigger" => options.trigger = trigger_value(cx, &arg),
                "skip_on_upstream_skip" => options.skip_on_upstream_skip = bool_value(cx, &arg),
                "tags" => options.tags = tags_value(cx, &arg),
                "local" => {
                    if let Some(v) = &arg.value {
                        cx.error_spanned_by(v, "`local` takes no value: write `#[task(local)]`");
                    }
                    options.local = Some(arg.key.clone());
                }
                "cache_for" => {
                    options.cache_for_nanos = duration_value(cx, &arg);
                    if options.cache_for_nanos == Some(0) {
                        cx.error_spanned_by(&arg.value, "`cache_for` must be longer than zero");
                    }
                    options.stores.get_or_insert(arg.key.clone());
                }
                "cache_key" => {
                    options.cache_key = string_value(cx, &arg);
                    if let Some(key) = options.cache_key.as_ref().filter(|k| k.value().trim().is_empty()) {
                        cx.error_spanned_by(key, "a `cache_key` cannot be empty");
                    }
                    options.stores.get_or_insert(arg.key.clone());
                }
                "persist" => {
                    options.persist = match &arg.value {
                        None => Some(true),
                        Some(_) => bool_value(cx, &arg),
                    };
                    if options.persist == Some(true) {
                        options.stores.get_or_insert(arg.key.clone());
                    }
                }
                "batch" => {
                    options.batch = batch_value(cx, &arg);
                    options.batch_key = Some(arg.key.clone());
                }
                _ => cx.error_spanned_by(
                    &arg.key,
                    format!("unknown task option `{key}`; the options are {OPTIONS}"),
                ),
            }
        }
        if let (Some(_), Some(batch)) = (&options.local, &options.batch_key) {
            cx.error_spanned_by(
                batch,
                "a `local` task runs in this program, never on a cluster, so its runs are never batched: \
                 remove `batch`",
            );
        }
        if let (Some(local), Some(stores)) = (&options.local, &options.stores) {
            cx.error_spanned_by(
                local,
                format!(
                    "a `local` task cannot use `{stores}`: stored results are written with serde; \
                     remove `local` and derive `Serialize` and `Deserialize` for its inputs and output"
                ),
            );
        }
        options
    }
}

/// `batch = false` (1: every run alone), `batch = true` (the executor decides) or
/// `batch = N` (at most N runs per unit of work, N ≥ 1).
fn batch_value(cx: &mut Ctxt, arg: &OptionArg) -> Option<u32> {
    const HOW: &str = "`batch = false` (each run on a cluster alone) or `batch = 100` (at most 100 runs \
                       per unit of work)";
    match require_value(cx, arg, "batch = 100")? {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => (!b.value).then_some(1),
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => match i.base10_parse::<u32>() {
            Ok(0) => {
                cx.error_spanned_by(i, format!("`batch = 0` cannot run anything: write {HOW}"));
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                cx.error_spanned_by(
                    i,
                    format!("`batch` takes a number of runs from 1 to {}", u32::MAX),
                );
                None
            }
        },
        other => {
            cx.error_spanned_by(other, format!("`batch` takes `false` or a number of runs: {HOW}"));
            None
        }
    }
}

fn require_value<'a>(cx: &mut Ctxt, arg: &'a OptionArg, example: &str) -> Option<&'a Expr> {
    if arg.value.is_none() {
        cx.error_spanned_by(&arg.key, format!("`{}` needs a value: `{}`", arg.key, example));
    }
    arg.value.as_ref()
}

fn string_value(cx: &mut Ctxt, arg: &OptionArg) -> Option<LitStr> {
    let example = format!("{} = \"..\"", arg.key);
    match require_value(cx, arg, &example)? {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Some(s.clone()),
        other => {
            cx.error_spanned_by(
                other,
                format!("`{}` takes a string literal: `{example}`", arg.key),
            );
            None
        }
    }
}

fn duration_value(cx: &mut Ctxt, arg: &OptionArg) -> Option<u64> {
    let lit = string_value(cx, arg)?;
    match duration::parse(&lit.value()) {
        Ok(d) => match u64::try_from(d.as_nanos()) {
            Ok(n) => Some(n),
            Err(_) => {
                cx.error_spanned_by(
                    &lit,
                    format!(
                        "`{}` is too long: the longest duration is about 584 years",
                        arg.key
                    ),
                );
                None
            }
        },
        Err(msg) => {
            cx.error_spanned_by(&lit, msg);
            None
        }
    }
}

fn float_value(cx: &mut Ctxt, arg: &OptionArg, example: &str) -> Option<f64> {
    let parsed = match require_value(cx, arg, example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>().ok(),
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse::<f64>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        cx.error_spanned_by(&arg.value, format!("`{}` takes a number: `{example}`", arg.key));
    }
    parsed.filter(|f| f.is_finite())
}

fn int_value(cx: &mut Ctxt, arg: &OptionArg) -> Option<u32> {
    match require_value(cx, arg, "max_retries = 3")? {
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => match i.base10_parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                cx.error_spanned_by(
                    i,
                    format!("`{}` takes a whole number from 0 to {}", arg.key, u32::MAX),
                );
                None
            }
        },
        Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => {
            cx.error_spanned_by(arg.value.as_ref()?, format!("`{}` cannot be negative", arg.key));
            None
        }
        other => {
            cx.error_spanned_by(
                other,
                format!("`{}` takes a whole number, like `max_retries = 3`", arg.key),
            );
            None
        }
    }
}

fn bool_value(cx: &mut Ctxt, arg: &OptionArg) -> Option<bool> {
    match require_value(cx, arg, "skip_on_upstream_skip = false")? {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Some(b.value),
        other => {
            cx.error_spanned_by(other, format!("`{}` takes `true` or `false`", arg.key));
            None
        }
    }
}

fn trigger_value(cx: &mut Ctxt, arg: &OptionArg) -> Option<Ident> {
    let names = TRIGGERS
        .iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let (text, span) = match require_value(cx, arg, "trigger = all_finished")? {
        Expr::Path(p) if p.path.get_ident().is_some() => {
            let ident = p.path.get_ident()?;
            (ident.to_string(), ident.span())
        }
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => (s.value(), s.span()),
        other => {
            cx.error_spanned_by(other, format!("`trigger` takes one of {names}"));
            return None;
        }
    };
    match TRIGGERS.iter().find(|(n, _)| *n == text) {
        Some((_, variant)) => Some(Ident::new(variant, span)),
        None => {
            cx.error_at(
                span,
                format!("unknown trigger `{text}`; the triggers are {names}"),
            );
            None
        }
    }
}

fn tags_value(cx: &mut Ctxt, arg: &OptionArg) -> Vec<LitStr> {
    let Some(value) = require_value(cx, arg, "tags = [\"db\"]") else {
        return Vec::new();
    };
    let elems: Vec<&Expr> = match value {
        Expr::Array(a) => a.elems.iter().collect(),
        Expr::Lit(ExprLit { lit: Lit::Str(_), .. }) => vec![value],
        other => {
            cx.error_spanned_by(
                other,
                "`tags` takes an array of strings: `tags = [\"db\", \"io\"]`",
            );
            return Vec::new();
        }
    };
    let mut tags: Vec<LitStr> = Vec::new();
    for e in elems {
        match e {
            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => {
                if s.value().trim().is_empty() {
                    cx.error_spanned_by(s, "a tag cannot be empty");
                } else if tags.iter().any(|t| t.value() == s.value()) {
                    cx.error_spanned_by(s, format!("duplicate tag \"{}\"", s.value()));
                } else {
                    tags.push(s.clone());
                }
            }
            other => cx.error_spanned_by(other, "each tag is a string literal: `tags = [\"db\", \"io\"]`"),
        }
    }
    tags
}

/// One data parameter of the task function.
struct Param {
    /// The name shown in messages and graphs.
    name: String,
    /// The owned type (`T` for a `&T` parameter).
    ty: Type,
    by_ref: bool,
}

/// Where the context parameter sits among the function's parameters.
struct Signature {
    params: Vec<Param>,
    /// Index in the function's parameter list of the `&TaskContext`, if any.
    context_at: Option<usize>,
    /// The value type (`T` in `-> T` or `-> Result<T, E>`).
    output: Type,
    /// For `Result<T, E>`: where the error type is written (`E`, or the alias).
    fallible: Option<Span>,
    is_async: bool,
}

impl Signature {
    fn parse(cx: &mut Ctxt, func: &ItemFn) -> Option<Signature> {
        let sig = &func.sig;
        if !sig.generics.params.is_empty() {
            cx.error_spanned_by(
                &sig.generics,
                "a task cannot be generic: workers find a task by its name and its inputs cross processes, \
                 so its types must be concrete",
            );
        }
        if let Some(c) = &sig.constness {
            cx.error_spanned_by(c, "a task cannot be a `const fn`");
        }
        if let Some(u) = &sig.unsafety {
            cx.error_spanned_by(
                u,
                "a task cannot be an `unsafe fn`: wrap the unsafe call in a safe function",
            );
        }
        if let Some(v) = &sig.variadic {
            cx.error_spanned_by(v, "a task cannot be variadic");
        }
        let mut params = Vec::new();
        let mut context_at = None;
        for (i, input) in sig.inputs.iter().enumerate() {
            let pat_type = match input {
                FnArg::Receiver(r) => {
                    cx.error_spanned_by(
                        r,
                        "a task cannot be a method: put `#[task]` on a free function and pass what it needs as parameters",
                    );
                    continue;
                }
                FnArg::Typed(t) => t,
            };
            let name = match &*pat_type.pat {
                Pat::Ident(p) => p.ident.to_string(),
                other => other.to_token_stream().to_string(),
            };
            match &*pat_type.ty {
                Type::Reference(r) if is_context(&r.elem) => {
                    if let Some(m) = &r.mutability {
                        cx.error_spanned_by(m, "take the task context as `&TaskContext`, not `&mut`");
                    }
                    if context_at.replace(i).is_some() {
                        cx.error_spanned_by(&pat_type.ty, "a task takes at most one `&TaskContext`");
                    }
                }
                // `&str` and `&[T]` read an upstream `String` or `Vec<T>` without a clone.
                Type::Reference(r) if r.mutability.is_none() && borrowed_owner(&r.elem).is_some() => {
                    if let Some(owned) = borrowed_owner(&r.elem) {
                        params.push(Param { name, ty: owned, by_ref: true });
                    }
                }
                Type::Reference(r) if is_unsized(&r.elem) => cx.error_spanned_by(
                    &pat_type.ty,
                    format!(
                        "a task cannot take `{}`: take `{}` (or `&{1}` to read it without a clone)",
                        type_text(&pat_type.ty),
                        owned_of(&r.elem)
                    ),
                ),
                Type::Reference(r) => {
                    if let Some(m) = &r.mutability {
                        cx.error_spanned_by(
                            m,
                            "a task cannot take `&mut`: upstream results are shared between tasks; \
                             take the value (`T`) to get a copy of your own",
                        );
                    }
                    check_param_type(cx, &r.elem);
                    params.push(Param { name, ty: (*r.elem).clone(), by_ref: true });
                }
                Type::ImplTrait(_) => cx.error_spanned_by(
                    &pat_type.ty,
                    "a task parameter cannot be `impl Trait`: the flow passes it a value of one concrete type; \
                     name that type",
                ),
                ty => {
                    if is_context(ty) {
                        cx.error_spanned_by(ty, "take the task context by reference: `ctx: &TaskContext`");
                    }
                    check_param_type(cx, ty);
                    params.push(Param { name, ty: ty.clone(), by_ref: false });
                }
            }
        }
        let (output, fallible) = match &sig.output {
            ReturnType::Default => (syn::parse_quote!(()), None),
            ReturnType::Type(_, ty) => match result_ok_type(ty) {
                Some(ok) => (ok, Some(result_err_span(ty))),
                None => {
                    if let Type::ImplTrait(_) = &**ty {
                        cx.error_spanned_by(
                            ty,
                            "a task cannot return `impl Trait`: name the type it returns",
                        );
                    }
                    ((**ty).clone(), None)
                }
            },
        };
        if params.len() > 12 {
            cx.error_spanned_by(
                &sig.inputs,
                "a task takes at most 12 parameters: group some into a struct",
            );
        }
        if cx.has_errors() {
            return None;
        }
        Some(Signature {
            params,
            context_at,
            output,
            fallible,
            is_async: sig.asyncness.is_some(),
        })
    }
}

/// The owned type a `&str` (`String`) or `&[T]` (`Vec<T>`) parameter borrows from.
fn borrowed_owner(elem: &Type) -> Option<Type> {
    match elem {
        Type::Path(p) if p.path.is_ident("str") => Some(syn::parse_quote!(::std::string::String)),
        Type::Slice(s) => {
            let item = &s.elem;
            Some(syn::parse_quote!(::std::vec::Vec<#item>))
        }
        _ => None,
    }
}

/// `str`, `[T]` and `dyn Trait`: types a task input cannot be stored as.
fn is_unsized(ty: &Type) -> bool {
    matches!(ty, Type::Slice(_) | Type::TraitObject(_))
        || matches!(ty, Type::Path(p) if p.path.is_ident("str"))
}

/// The owned type to take instead of a borrowed unsized one.
fn owned_of(ty: &Type) -> String {
    match ty {
        Type::Slice(s) => format!("Vec<{}>", type_text(&s.elem)),
        Type::Path(p) if p.path.is_ident("str") => "String".to_owned(),
        other => format!("Box<{}>", type_text(other)),
    }
}

fn check_param_type(cx: &mut Ctxt, ty: &Type) {
    if let Type::ImplTrait(_) = ty {
        cx.error_spanned_by(
            ty,
            "a task parameter cannot be `impl Trait`: the flow passes it a value of one concrete type; name that type",
        );
    }
    if let Type::Reference(_) = ty {
        cx.error_spanned_by(ty, "a task parameter cannot be a reference to a reference");
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

fn is_context(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "TaskContext" && s.arguments.is_none())
}

/// Where the error type of a `Result<T, E>` is written (the whole type for an alias).
fn result_err_span(ty: &Type) -> Span {
    let err = last_segment(ty).and_then(|seg| match &seg.arguments {
        syn::PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter(|a| matches!(a, syn::GenericArgument::Type(_)))
            .nth(1)
            .map(Spanned::span),
        _ => None,
    });
    err.unwrap_or_else(|| ty.span())
}

/// `T` for `Result<T, E>` (or a `Result<T>` alias).
fn result_ok_type(ty: &Type) -> Option<Type> {
    let seg = last_segment(ty)?;
    if seg.ident != "Result" {
        return None;
    }
    match &seg.arguments {
        syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    }
}

fn generate(func: &ItemFn, options: &Options, sig: &Signature) -> TokenStream {
    let p = quote!(::tideflow::__private);
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let fn_name = ident.to_string();
    let task_name = options.name.as_ref().map_or(fn_name.clone(), LitStr::value);
    let output = &sig.output;
    let span = ident.span();

    // The owned type of each data parameter, in order.
    let param_tys: Vec<&Type> = sig.params.iter().map(|p| &p.ty).collect();
    let param_names: Vec<&str> = sig.params.iter().map(|p| p.name.as_str()).collect();
    let param_ty_texts: Vec<String> = param_tys.iter().map(|t| type_text(t)).collect();
    let output_text = type_text(output);

    // Checks on the types the user wrote, each spanned at that type.
    let mut checks = TokenStream::new();
    for ty in param_tys.iter().copied().chain(std::iter::once(output)) {
        let ts = ty.span();
        let store = shareable(ty, ident, "store");
        checks.extend(quote_spanned! {ts=> let _ = #store; });
    }
    // How values cross a process or a disk: serde, checked at each type the user wrote.
    let codec = if options.local.is_some() {
        quote!(::core::option::Option::None)
    } else {
        let portable = |ty: &Type, item: &str| {
            let ts = ty.span();
            let pt = crate::private_at(ts);
            let item = Ident::new(item, ts);
            quote_spanned! {ts=> <#ty as #pt::Portable<#ident>>::#item }
        };
        let encode_output = portable(output, "ENCODE");
        let decode_output = portable(output, "DECODE");
        let encode_inputs = param_tys.iter().map(|t| portable(t, "ENCODE"));
        let pack_output = portable(output, "PACK");
        let unpack_output = portable(output, "UNPACK");
        let pack_inputs = param_tys.iter().map(|t| portable(t, "PACK"));
        let unpack_inputs = param_tys.iter().map(|t| portable(t, "UNPACK"));
        quote! {
            ::core::option::Option::Some(&#p::TaskCodec {
                encode_output: #encode_output,
                decode_output: #decode_output,
                encode_inputs: &[#(#encode_inputs),*],
                pack_output: #pack_output,
                unpack_output: #unpack_output,
                pack_inputs: &[#(#pack_inputs),*],
                unpack_inputs: &[#(#unpack_inputs),*],
            })
        }
    };

    // Take each input out of the value list, then call the function. Every conversion
    // goes through the same check, at the same type token, as the checks above, so a type
    // that does not fit is reported once, there.
    let mut unpack = TokenStream::new();
    let mut call_args: Vec<TokenStream> = Vec::new();
    for (i, param) in sig.params.iter().enumerate() {
        let ty = &param.ty;
        let ts = ty.span();
        let v = format_ident!("__tideflow_v{}", i);
        unpack.extend(quote! {
            let #v = ::core::option::Option::ok_or_else(
                ::core::iter::Iterator::next(&mut __tideflow_inputs),
                || #p::TaskError::fail("missing input"),
            )?;
        });
        let pt = crate::private_at(ts);
        if param.by_ref {
            unpack.extend(quote_spanned! {ts=> let #v: &#ty = #pt::borrow::<#ty>(&#v)?; });
        } else {
            let taker = shareable(ty, ident, "taker");
            unpack.extend(quote_spanned! {ts=> let #v: #ty = #taker()(#v)?; });
        }
        call_args.push(quote!(#v));
    }
    if let Some(at) = sig.context_at {
        call_args.insert(at, quote!(__tideflow_ctx));
    }
    let call = quote_spanned! {span=> #ident(#(#call_args),*) };
    let awaited = if sig.is_async { quote!(#call.await) } else { call };
    let os = output.span();
    let store_fn = shareable(output, ident, "store");
    let store = quote_spanned! {os=> #store_fn() };
    let finish = match sig.fallible {
        Some(es) => {
            let pe = crate::private_at(es);
            let convert = quote_spanned! {es=> #pe::IntoTaskError::<#ident>::into_task_error(e) };
            quote! {
                match #awaited {
                    #p::Result::Ok(v) => #p::Result::Ok(#store(v)),
                    #p::Result::Err(e) => #p::Result::Err(#convert),
                }
            }
        }
        None => quote! { #p::Result::Ok(#store(#awaited)) },
    };
    let body = if sig.is_async {
        quote! {
            fn __tideflow_body(
                __tideflow_values: #p::Vec<#p::Value>,
                __tideflow_ctx: #p::TaskContext,
            ) -> #p::BoxFuture {
                #checks
                #p::Box::pin(async move {
                    let __tideflow_ctx = &__tideflow_ctx;
                    let mut __tideflow_inputs = ::core::iter::IntoIterator::into_iter(__tideflow_values);
                    #unpack
                    #finish
                })
            }
            #p::TaskBody::Async(__tideflow_body)
        }
    } else {
        quote! {
            fn __tideflow_body(
                __tideflow_values: #p::Vec<#p::Value>,
                __tideflow_ctx: &#p::TaskContext,
            ) -> #p::Result<#p::Value, #p::TaskError> {
                #checks
                let mut __tideflow_inputs = ::core::iter::IntoIterator::into_iter(__tideflow_values);
                #unpack
                #finish
            }
            #p::TaskBody::Sync(__tideflow_body)
        }
    };

    let max_retries = options.max_retries.unwrap_or(0);
    let delay = options.retry_delay_nanos.unwrap_or(0);
    let factor = options.retry_backoff.unwrap_or(1.0);
    let jitter = options.retry_jitter.unwrap_or(0.0);
    let some_duration = |nanos: Option<u64>| match nanos {
        Some(n) => quote!(::core::option::Option::Some(#p::Duration::from_nanos(#n))),
        None => quote!(::core::option::Option::None),
    };
    let max_delay = some_duration(options.retry_max_delay_nanos);
    let timeout = some_duration(options.timeout_nanos);
    let retry_on = match &options.retry_on {
        Some(path) => {
            let ps = crate::private_at(path.span());
            let check = quote_spanned! {path.span()=>
                const RETRY_ON: fn(&#ps::TaskError) -> bool = #path;
            };
            quote!({ #check ::core::option::Option::Some(RETRY_ON) })
        }
        None => quote!(::core::option::Option::None),
    };
    let trigger = options
        .trigger
        .clone()
        .unwrap_or_else(|| Ident::new("AllSuccessful", Span::call_site()));
    let skip = options.skip_on_upstream_skip.unwrap_or(true);
    let tags = &options.tags;
    let local = options.local.is_some();
    let cache_for = some_duration(options.cache_for_nanos);
    let cache_key = match &options.cache_key {
        Some(k) => quote!(::core::option::Option::Some(#k)),
        None => quote!(::core::option::Option::None),
    };
    let persist = match options.persist {
        Some(b) => quote!(::core::option::Option::Some(#b)),
        None => quote!(::core::option::Option::None),
    };
    let batch = match options.batch {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let doc = format!("Task companion of [`{fn_name}()`]: its name, options and types, for `flow!`.");

    quote! {
        #func

        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        const _: () = {
            #[diagnostic::do_not_recommend]
            impl #p::Task for #ident {
                type Output = #output;
                type Sig = fn(#(#param_tys),*) -> #output;
                const DEF: &'static #p::TaskDef = &#p::TaskDef {
                    name: #task_name,
                    key: ::core::concat!(::core::module_path!(), "::", #fn_name),
                    options: #p::TaskOptions {
                        max_retries: #max_retries,
                        retry_delay: #p::Duration::from_nanos(#delay),
                        retry_backoff: #p::Backoff {
                            factor: #factor,
                            max: #max_delay,
                            jitter: #jitter,
                        },
                        retry_on: #retry_on,
                        timeout: #timeout,
                        trigger: #p::Trigger::#trigger,
                        skip_on_upstream_skip: #skip,
                        tags: &[#(#tags),*],
                        local: #local,
                        cache_for: #cache_for,
                        cache_key: #cache_key,
                        persist: #persist,
                        batch: #batch,
                    },
                    params: &[#(#p::TaskParam { name: #param_names, ty: #param_ty_texts }),*],
                    output: #output_text,
                    body: { #body },
                    codec: #codec,
                };
            }

            #p::inventory::submit! {
                #p::TaskRegistration { def: <#ident as #p::Task>::DEF }
            }
        };
    }
}

/// `<TaskIo as Shareable<T, Tk>>::method`, spanning the user's whole type `T`, so its
/// check and the conversions that need it are one error, under the whole type.
fn shareable(ty: &Type, task: &Ident, method: &str) -> TokenStream {
    let mut tokens = ty.to_token_stream().into_iter();
    let first = tokens.next().map_or_else(|| ty.span(), |t| t.span());
    let last = tokens.last().map_or(first, |t| t.span());
    let p = crate::private_at(first);
    let method = Ident::new(method, last);
    quote_spanned! {first=> <#p::TaskIo as #p::Shareable<#ty, #task>>::#method }
}

/// An expression as a user would write it (`Metric::Mae`, not `Metric :: Mae`), for
/// printing constants in graphs.
pub(crate) fn expr_text(expr: &Expr) -> String {
    tidy(&expr.to_token_stream().to_string(), |prev, next| {
        matches!(prev, Some('(' | '[' | '&' | ':' | '.' | '!'))
            || matches!(next, Some(')' | ']' | ',' | ';' | ':' | '.' | '(' | '!' | '['))
                && !matches!(
                    prev,
                    Some('=' | ',' | '+' | '-' | '*' | '/' | '|' | '&' | '<' | '>')
                )
    })
}

/// A type as a user would write it (`Vec<Chunk>`, not `Vec < Chunk >`).
pub(crate) fn type_text(ty: &Type) -> String {
    let text = tidy(&ty.to_token_stream().to_string(), |prev, next| {
        matches!(prev, Some('<' | '(' | '[' | '&' | ':'))
            || matches!(next, Some('<' | '>' | ',' | ';' | ')' | ']' | ':'))
    });
    // `&str` and `&[T]` parameters are stored as these; show them as users write them.
    text.replace("::std::string::", "").replace("::std::vec::", "")
}

/// Drops the spaces `proc_macro2` prints between tokens where `glued(before, after)` says
/// code is written without one.
fn tidy(raw: &str, glued: impl Fn(Option<char>, Option<char>) -> bool) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::with_capacity(raw.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j]);
        if c == ' ' && glued(prev, chars.get(i + 1).copied()) {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(src: &str) -> String {
        type_text(&syn::parse_str::<Type>(src).expect("a type"))
    }

    #[test]
    fn type_text_reads_like_written_code() {
        assert_eq!(text("Vec<Chunk>"), "Vec<Chunk>");
        assert_eq!(text("(u64, f64)"), "(u64, f64)");
        assert_eq!(text("Option<Vec<(String, u32)>>"), "Option<Vec<(String, u32)>>");
        assert_eq!(
            text("std::collections::HashMap<String, Vec<u8>>"),
            "std::collections::HashMap<String, Vec<u8>>"
        );
        assert_eq!(text("[u8; 4]"), "[u8; 4]");
        assert_eq!(text("&'static str"), "&'static str");
        assert_eq!(text("()"), "()");
    }

    #[test]
    fn expr_text_reads_like_written_code() {
        let text = |src: &str| expr_text(&syn::parse_str::<Expr>(src).expect("an expression"));
        assert_eq!(text("Metric::Mae"), "Metric::Mae");
        assert_eq!(text("vec![1, 2, 3]"), "vec![1, 2, 3]");
        assert_eq!(text("String::from(\"x\")"), "String::from(\"x\")");
        assert_eq!(text("\"a\".into()"), "\"a\".into()");
        assert_eq!(text("[1, 2]"), "[1, 2]");
        assert_eq!(text("a + (b * 2)"), "a + (b * 2)");
    }

    #[test]
    fn result_ok_type_finds_the_value_type() {
        let ok =
            |src: &str| result_ok_type(&syn::parse_str::<Type>(src).expect("a type")).map(|t| type_text(&t));
        assert_eq!(ok("Result<Vec<u8>, TaskError>"), Some("Vec<u8>".to_owned()));
        assert_eq!(ok("std::io::Result<u8>"), Some("u8".to_owned()));
        assert_eq!(ok("Option<u8>"), None);
    }
}
