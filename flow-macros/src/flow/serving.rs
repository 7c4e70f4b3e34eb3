//! `#[schedule(..)]` and `#[serve(..)]` on a flow: read and checked here (a malformed
//! interval, cron expression, time, time zone or policy is an error at its literal), then
//! expanded into `Flow::schedule` and `Flow::serve_policy` calls.
//!
//! ```text
//! #[schedule(every = "24h")]
//! #[schedule(every = "1h", from = "2026-01-01T06:00:00Z", until = "2027-01-01T00:00:00Z")]
//! #[schedule(cron = "0 6 * * MON-FRI", timezone = "Europe/Paris", params(batch_size = 500))]
//! #[serve(missed = "latest", max_running = 1, when_busy = "skip")]
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, LitInt, LitStr};

use super::parse::FlowDecl;
use crate::ctxt::Ctxt;

/// A flow's schedules and policy, checked.
pub(super) struct Serving {
    schedules: Vec<ScheduleDecl>,
    policy: Option<PolicyDecl>,
}

struct ScheduleDecl {
    /// The schedule's text form, valid.
    text: String,
    span: Span,
    params: Vec<(Ident, Expr)>,
}

struct PolicyDecl {
    missed: flow_schedule::Missed,
    max_running: Option<usize>,
    when_busy: flow_schedule::WhenBusy,
}

const SCHEDULE_KEYS: &str = "a schedule takes `every = \"24h\"` or `cron = \"0 6 * * *\"`, and optionally `from = \"..\"` \
                             (with `every`), `timezone = \"Europe/Paris\"` (with `cron`), `until = \"..\"` and \
                             `params(name = value, ..)`";

const SERVE_KEYS: &str =
    "`#[serve(..)]` takes `missed = \"skip\" | \"latest\" | \"all\"`, `max_running = N` and `when_busy = \"wait\" | \"skip\"`";

/// Reads the flow's `#[schedule]` and `#[serve]` attributes; `Err`: their mistakes.
pub(super) fn read(flow: &FlowDecl) -> Result<Serving, TokenStream> {
    let mut cx = Ctxt::default();
    let mut serving = Serving {
        schedules: Vec::new(),
        policy: None,
    };
    for attr in &flow.serving {
        if attr.path().is_ident("schedule") {
            if let Some(decl) = schedule(&mut cx, flow, attr) {
                serving.schedules.push(decl);
            }
        } else if serving.policy.is_some() {
            cx.error_spanned_by(attr, "a flow takes one `#[serve(..)]`: put its options together");
        } else {
            serving.policy = Some(policy(&mut cx, attr));
        }
    }
    match cx.into_compile_errors() {
        Some(errors) => Err(errors),
        None => Ok(serving),
    }
}

fn schedule(cx: &mut Ctxt, flow: &FlowDecl, attr: &Attribute) -> Option<ScheduleDecl> {
    let mut every: Option<LitStr> = None;
    let mut cron: Option<LitStr> = None;
    let mut from: Option<LitStr> = None;
    let mut until: Option<LitStr> = None;
    let mut zone: Option<LitStr> = None;
    let mut params: Vec<(Ident, Expr)> = Vec::new();
    let list = match &attr.meta {
        syn::Meta::List(list) => list,
        _ => {
            cx.error_spanned_by(
                attr,
                format!(
                    "`#[schedule]` needs its options, as `#[schedule(every = \"24h\")]`: {SCHEDULE_KEYS}"
                ),
            );
            return None;
        }
    };
    let parsed = list.parse_nested_meta(|meta| {
        let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
        let slot = match key.as_str() {
            "every" => &mut every,
            "cron" => &mut cron,
            "from" => &mut from,
            "until" => &mut until,
            "timezone" => &mut zone,
            "params" => {
                meta.parse_nested_meta(|param| {
                    let name =
                        param.path.get_ident().cloned().ok_or_else(|| {
                            param.error("a parameter's name, as `params(batch_size = 500)`")
                        })?;
                    let value: Expr = param.value()?.parse()?;
                    params.push((name, value));
                    Ok(())
                })?;
                return Ok(());
            }
            _ => return Err(meta.error(format!("unknown schedule option: {SCHEDULE_KEYS}"))),
        };
        if slot.is_some() {
            return Err(meta.error(format!("`{key}` is given twice")));
        }
        let example = match key.as_str() {
            "every" => "every = \"24h\"",
            "cron" => "cron = \"0 6 * * *\"",
            "timezone" => "timezone = \"Europe/Paris\"",
            _ => "from = \"2026-01-01T06:00:00Z\"",
        };
        let value = meta.value()?;
        let lit = value
            .parse::<LitStr>()
            .map_err(|e| syn::Error::new(e.span(), format!("`{key}` takes a string, as `{example}`")))?;
        *slot = Some(lit);
        Ok(())
    });
    if let Err(e) = parsed {
        cx.push(e);
        return None;
    }
    let start = cx.count();
    let text = match (&every, &cron) {
        (Some(every), None) => {
            if let Some(zone) = &zone {
                cx.error_spanned_by(
                    zone,
                    "`timezone` is for `cron`; an interval keeps the zone of its `from` time: \
                     `from = \"2026-01-01T06:00[Europe/Paris]\"`",
                );
            }
            if let Err(reason) = flow_schedule::parse_duration(&every.value()) {
                cx.error_spanned_by(every, reason);
            }
            let mut text = format!("every {}", every.value());
            if let Some(from) = &from {
                check_time(cx, from);
                text.push_str(&format!(" from {}", from.value()));
            }
            text
        }
        (None, Some(cron)) => {
            if let Some(from) = &from {
                cx.error_spanned_by(
                    from,
                    "`from` is for `every`: a cron expression says its own times",
                );
            }
            let mut text = format!("cron {}", cron.value());
            if let Err(e) = flow_schedule::Schedule::parse(&text) {
                cx.error_spanned_by(cron, e.reason);
            }
            if let Some(zone) = &zone {
                match flow_schedule::parse_zone(&zone.value()) {
                    Ok(_) => text.push_str(&format!(" in {}", zone.value())),
                    Err(reason) => cx.error_spanned_by(zone, reason),
                }
            }
            text
        }
        (Some(_), Some(cron)) => {
            cx.error_spanned_by(
                cron,
                "a schedule is `every` or `cron`, not both: declare two schedules",
            );
            return None;
        }
        (None, None) => {
            cx.error_spanned_by(
                attr,
                format!("a schedule needs `every` or `cron`: {SCHEDULE_KEYS}"),
            );
            return None;
        }
    };
    let mut text = text;
    if let Some(until) = &until {
        check_time(cx, until);
        text.push_str(&format!(" until {}", until.value()));
    }
    if cx.count() > start {
        return None;
    }
    // What only the whole tells: `until` before `from`, a cron that never matches.
    let text = match flow_schedule::Schedule::parse(&text) {
        Ok(schedule) => schedule.to_string(),
        Err(e) => {
            cx.error_spanned_by(attr, e.reason);
            return None;
        }
    };
    check_params(cx, flow, attr, &params);
    Some(ScheduleDecl {
        text,
        span: attr.span(),
        params,
    })
}

fn check_time(cx: &mut Ctxt, lit: &LitStr) {
    if let Err(reason) = flow_schedule::parse_time(&lit.value()) {
        cx.error_spanned_by(lit, format!("`{}` is {reason}", lit.value()));
    }
}

/// Each parameter a flow has, once; every required one given.
fn check_params(cx: &mut Ctxt, flow: &FlowDecl, attr: &Attribute, params: &[(Ident, Expr)]) {
    let names: Vec<String> = flow.params.iter().map(|p| format!("`{}`", p.name)).collect();
    for (i, (name, _)) in params.iter().enumerate() {
        if !flow.params.iter().any(|p| p.name == *name) {
            let known = if names.is_empty() {
                "it has none".to_owned()
            } else {
                format!("its parameters are {}", names.join(", "))
            };
            cx.error_spanned_by(
                name,
                format!("the flow `{}` has no parameter `{name}`: {known}", flow.name),
            );
        } else if params[..i].iter().any(|(n, _)| n == name) {
            cx.error_spanned_by(name, format!("`{name}` is given twice"));
        }
    }
    for p in flow.params.iter().filter(|p| p.default.is_none()) {
        if !params.iter().any(|(n, _)| *n == p.name) {
            cx.error_spanned_by(
                attr,
                format!(
                    "this schedule gives no value to `{0}`, a required parameter of `{1}`: add `params({0} = ..)`",
                    p.name, flow.name
                ),
            );
        }
    }
}

fn policy(cx: &mut Ctxt, attr: &Attribute) -> PolicyDecl {
    let mut decl = PolicyDecl {
        missed: flow_schedule::Missed::default(),
        max_running: None,
        when_busy: flow_schedule::WhenBusy::default(),
    };
    let list = match &attr.meta {
        syn::Meta::List(list) => list,
        _ => {
            cx.error_spanned_by(attr, format!("`#[serve]` needs its options: {SERVE_KEYS}"));
            return decl;
        }
    };
    let parsed = list.parse_nested_meta(|meta| {
        let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
        match key.as_str() {
            "missed" => decl.missed = policy_value(&meta)?,
            "when_busy" => decl.when_busy = policy_value(&meta)?,
            "max_running" => {
                let lit: LitInt = meta.value()?.parse()?;
                let n: usize = lit.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`max_running = 0` would never run the flow: give 1 or more (or leave it out for no limit)",
                    ));
                }
                decl.max_running = Some(n);
            }
            _ => return Err(meta.error(format!("unknown `serve` option: {SERVE_KEYS}"))),
        }
        Ok(())
    });
    if let Err(e) = parsed {
        cx.push(e);
    }
    decl
}

/// A policy's value (`missed = "latest"`), read by the parser `serve` uses; an error at
/// the literal when it names none.
fn policy_value<T: std::str::FromStr<Err = String>>(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<T> {
    let lit: LitStr = meta.value()?.parse()?;
    lit.value().parse().map_err(|e| syn::Error::new(lit.span(), e))
}

/// `.schedule(..)` for each schedule and `.serve_policy(..)`, chained onto the flow.
pub(super) fn expand(serving: &Serving, flow: &FlowDecl, p: &TokenStream) -> TokenStream {
    let mut out = TokenStream::new();
    for decl in &serving.schedules {
        let text = &decl.text;
        let mut run = quote_spanned! {decl.span=> #p::ScheduledRun::new(#p::schedule_literal(#text)) };
        for (name, value) in &decl.params {
            let Some(param) = flow.params.iter().find(|p| p.name == *name) else {
                continue;
            };
            let ty = &param.ty;
            let pname = name.to_string();
            let vspan = value.span();
            let typed = quote_spanned! {vspan=> { let __tideflow_value: #ty = #value; __tideflow_value } };
            run = quote! { #run.param(#pname, #p::schedule_param(#pname, #typed)) };
        }
        out.extend(quote! { .schedule(#run) });
    }
    if let Some(policy) = &serving.policy {
        // The variants by name: `Latest` is `#p::Missed::Latest`.
        let missed = format_ident!("{}", format!("{:?}", policy.missed));
        let when_busy = format_ident!("{}", format!("{:?}", policy.when_busy));
        let (missed, when_busy) = (quote!(#p::Missed::#missed), quote!(#p::WhenBusy::#when_busy));
        let max_running = match policy.max_running {
            Some(n) => quote!(::core::option::Option::Some(#n)),
            None => quote!(::core::option::Option::None),
        };
        out.extend(quote! {
            .serve_policy(#p::ServePolicy { missed: #missed, max_running: #max_running, when_busy: #when_busy })
        });
    }
    out
}
