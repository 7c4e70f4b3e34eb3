//! `flow!`: parse the flow declarations, resolve what each argument is from syntax, and
//! expand into a graph builder whose trait checks let rustc verify every type.
//!
//! The macro knows each argument's *kind* from syntax alone: a flow parameter or
//! `let x = task(..)` is a single value, `let xs = task.map(..)` a mapped one, anything
//! that uses no binding a constant. It emits a different check per kind, spanned at the
//! user's token; rustc checks the types.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Attribute, Expr, Ident, Token, Type, Visibility};

use crate::ctxt::Ctxt;
use crate::task::type_text;

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    if input.is_empty() {
        return syn::Error::new(
            Span::call_site(),
            "`flow!` is empty: declare a flow in it, like `flow! { pub fn my_flow(n: u64 = 10) -> u64 { .. } }`",
        )
        .to_compile_error();
    }
    let flows = match syn::parse2::<Flows>(input) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error(),
    };
    flows.0.iter().map(expand_flow).collect()
}

struct Flows(Vec<FlowDecl>);

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
struct FlowDecl {
    attrs: Vec<Attribute>,
    vis: Visibility,
    fn_token: Token![fn],
    name: Ident,
    params: Vec<FlowParam>,
    output: Option<Type>,
    body: Vec<syn::Stmt>,
    brace_span: Span,
}

struct FlowParam {
    name: Ident,
    ty: Type,
    default: Option<Expr>,
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

/// What a name in the flow stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A parameter or a task result.
    Single,
    /// The results of a mapped task.
    Mapped,
}

/// One task call, after nested calls have been hoisted out of its arguments.
struct Call {
    /// The binding it is stored in (the user's, or a generated one).
    binding: Ident,
    /// The name runs report it under ("" for an unbound call: the task's name).
    report_name: String,
    task: syn::Path,
    /// The `map` token of a `.map(..)` call.
    map: Option<Ident>,
    args: Vec<Arg>,
    after: Vec<Ident>,
}

enum Arg {
    /// A parameter or task result, by name.
    Name(Ident, Kind),
    /// `unmapped(x)` inside a `.map(..)`.
    Unmapped(Box<Arg>),
    /// A tuple or array of values, passed as one.
    Gather {
        array: bool,
        parts: Vec<Arg>,
        span: Span,
    },
    /// An expression that uses no binding.
    Const(Expr),
}

impl Arg {
    fn span(&self) -> Span {
        match self {
            Arg::Name(i, _) => i.span(),
            Arg::Unmapped(inner) => inner.span(),
            Arg::Gather { span, .. } => *span,
            Arg::Const(e) => e.span(),
        }
    }
}

/// The flow's final value.
enum Tail {
    None,
    Value(Arg),
}

struct Analysis<'a> {
    cx: Ctxt,
    names: HashMap<String, Kind>,
    calls: Vec<Call>,
    /// Inside a tuple or array passed directly to a `.map(..)` (already an error).
    gathering_in_map: bool,
    counter: usize,
    flow: &'a FlowDecl,
}

impl Analysis<'_> {
    fn kind_of(&self, ident: &Ident) -> Option<Kind> {
        self.names.get(&ident.to_string()).copied()
    }

    /// The first binding or parameter an expression mentions.
    fn mentioned_binding(&self, expr: &Expr) -> Option<Ident> {
        struct Finder<'b> {
            names: &'b HashMap<String, Kind>,
            found: Option<Ident>,
        }
        impl<'ast> Visit<'ast> for Finder<'_> {
            fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
                if let Some(i) = p.path.get_ident() {
                    if self.found.is_none() && p.qself.is_none() && self.names.contains_key(&i.to_string()) {
                        self.found = Some(i.clone());
                    }
                }
            }
            fn visit_macro(&mut self, m: &'ast syn::Macro) {
                fn scan(ts: TokenStream, f: &mut Finder<'_>) {
                    for tt in ts {
                        match tt {
                            TokenTree::Ident(i)
                                if f.found.is_none() && f.names.contains_key(&i.to_string()) =>
                            {
                                f.found = Some(i);
                            }
                            TokenTree::Group(g) => scan(g.stream(), f),
                            _ => {}
                        }
                    }
                }
                scan(m.tokens.clone(), self);
            }
        }
        let mut f = Finder {
            names: &self.names,
            found: None,
        };
        f.visit_expr(expr);
        f.found
    }

    /// A statement-level call: `task(..)`, `task.map(..)`, either `.after(..)`.
    fn call(&mut self, expr: &Expr, binding: Option<&Ident>) -> Option<(Ident, Kind)> {
        let (core, after) = match expr {
            Expr::MethodCall(m) if m.method == "after" => {
                let mut after = Vec::new();
                for a in &m.args {
                    let ident = match a {
                        Expr::Path(p) if p.qself.is_none() => p.path.get_ident(),
                        _ => None,
                    };
                    match ident {
                        Some(i) if self.is_param(i) => self.cx.error_spanned_by(
                            i,
                            format!(
                                "`{i}` is a flow parameter, not a task result: `.after(..)` orders tasks after \
                                 other tasks"
                            ),
                        ),
                        Some(i) if self.kind_of(i).is_some() => after.push(i.clone()),
                        _ => self.cx.error_spanned_by(
                            a,
                            "`.after(..)` takes the names of earlier task results, like `.after(setup, load)`; \
                             to wait for a task, bind it first: `let s = setup();` .. `.after(s)`",
                        ),
                    }
                }
                if after.is_empty() && m.args.is_empty() {
                    self.cx
                        .error_spanned_by(&m.method, "`.after(..)` needs at least one earlier task result");
                }
                (&*m.receiver, after)
            }
            other => (other, Vec::new()),
        };
        let (task, map, raw_args) = match core {
            Expr::Call(c) => match &*c.func {
                Expr::Path(p) if p.qself.is_none() => {
                    self.no_type_arguments(&p.path);
                    (p.path.clone(), None, &c.args)
                }
                other => {
                    self.cx
                        .error_spanned_by(other, "call a task by its name: `task(..)` or `task.map(..)`");
                    return None;
                }
            },
            Expr::MethodCall(m) if m.method == "map" => match &*m.receiver {
                Expr::Path(p) if p.qself.is_none() => {
                    self.no_type_arguments(&p.path);
                    if let Some(t) = &m.turbofish {
                        self.cx.error_spanned_by(t, "`.map(..)` takes no type arguments");
                    }
                    (p.path.clone(), Some(m.method.clone()), &m.args)
                }
                other => {
                    self.cx
                        .error_spanned_by(other, "`.map(..)` is called on a task's name: `task.map(xs)`");
                    return None;
                }
            },
            Expr::MethodCall(m) => {
                self.cx.error_spanned_by(
                    &m.method,
                    format!(
                        "`.{}(..)` is not flow syntax: a flow calls `task(..)` or `task.map(..)`, optionally followed by `.after(..)`",
                        m.method
                    ),
                );
                return None;
            }
            other => {
                self.cx.error_spanned_by(other, not_a_call(other));
                return None;
            }
        };
        let mapped = map.is_some();
        let args: Vec<Arg> = raw_args.iter().map(|a| self.arg(a, mapped, false)).collect();
        if let Some(map_ident) = &map {
            if args.is_empty() {
                self.cx
                    .error_spanned_by(map_ident, "`.map()` needs at least one argument to map over");
            } else if args.iter().all(|a| matches!(a, Arg::Unmapped(_))) {
                self.cx.error_at(
                    map_ident.span(),
                    format!(
                        "every argument of `{}.map(..)` is `unmapped`: there is nothing to map over; \
                         call `{0}(..)` to run it once, or map over a collection",
                        task.to_token_stream().to_string().replace(' ', "")
                    ),
                );
            }
        }
        let kind = if mapped { Kind::Mapped } else { Kind::Single };
        let (ident, report_name) = match binding {
            Some(b) => (b.clone(), b.to_string()),
            None => {
                self.counter += 1;
                let span = task
                    .segments
                    .last()
                    .map_or_else(|| task.span(), |s| s.ident.span());
                (
                    Ident::new(&format!("__tideflow_step{}", self.counter), span),
                    String::new(),
                )
            }
        };
        self.calls.push(Call {
            binding: ident.clone(),
            report_name,
            task,
            map,
            args,
            after,
        });
        Some((ident, kind))
    }

    /// One argument. `in_map`: directly inside a `.map(..)`; `in_unmapped`: inside `unmapped(..)`.
    fn arg(&mut self, expr: &Expr, in_map: bool, in_gather: bool) -> Arg {
        match expr {
            Expr::Paren(p) => return self.arg(&p.expr, in_map, in_gather),
            Expr::Group(g) => return self.arg(&g.expr, in_map, in_gather),
            Expr::Path(p) => {
                if let Some(ident) = p.path.get_ident() {
                    if let Some(kind) = self.kind_of(ident) {
                        return Arg::Name(ident.clone(), kind);
                    }
                }
            }
            Expr::Call(c) if matches!(&*c.func, Expr::Path(p) if p.path.is_ident("unmapped")) => {
                let func_span = c.func.span();
                if in_gather && self.gathering_in_map {
                    // Already reported: a tuple cannot be fanned out over.
                } else if !in_map || in_gather {
                    self.cx.error_at(
                        func_span,
                        "`unmapped(..)` only has a meaning inside `.map(..)`, where it passes one value to every child; \
                         here the value is already passed whole: remove `unmapped`",
                    );
                }
                if c.args.len() != 1 {
                    self.cx
                        .error_at(func_span, "`unmapped(..)` takes exactly one value");
                    return Arg::Const(expr.clone());
                }
                let inner = self.arg(&c.args[0], false, false);
                return Arg::Unmapped(Box::new(inner));
            }
            Expr::MethodCall(m) if m.method == "map" || m.method == "after" => {
                return self.nested(expr);
            }
            Expr::Call(c) if is_task_path(&c.func) => {
                return self.nested(expr);
            }
            Expr::Tuple(t) if self.is_wired(expr) => {
                return self.gather(expr, &t.elems, false, in_map);
            }
            Expr::Array(a) if self.is_wired(expr) => {
                return self.gather(expr, &a.elems, true, in_map);
            }
            Expr::Reference(r) => {
                if let Some(b) = self.mentioned_binding(&r.expr) {
                    self.cx.error_spanned_by(
                        expr,
                        format!(
                            "pass `{b}` itself, not a reference: a task that takes `&T` borrows the result without a clone"
                        ),
                    );
                    return Arg::Const(expr.clone());
                }
            }
            _ => {}
        }
        if let Some(call) = find_task_call(expr) {
            self.cx.error_spanned_by(
                &call,
                format!(
                    "`{}(..)` is a task call inside an expression: bind it first (`let x = {0}(..);`) and \
                     pass `x`; to call a plain function here, wrap the expression in a block `{{ .. }}`",
                    call.to_token_stream().to_string().replace(' ', "")
                ),
            );
            return Arg::Const(expr.clone());
        }
        if let Some(b) = self.mentioned_binding(expr) {
            let what = if self.flow.params.iter().any(|p| p.name == b) {
                "a flow parameter"
            } else {
                "a task result"
            };
            self.cx.error_at(
                b.span(),
                format!(
                    "`{b}` is {what}, which only exists when the flow runs, so it cannot be used in an expression here; \
                     pass `{b}` to a task directly and compute inside the task"
                ),
            );
        }
        Arg::Const(expr.clone())
    }

    /// A tuple or array that holds a task result, a parameter or a task call.
    fn is_wired(&self, expr: &Expr) -> bool {
        self.mentioned_binding(expr).is_some() || find_task_call(expr).is_some()
    }

    fn is_param(&self, ident: &Ident) -> bool {
        self.flow.params.iter().any(|p| p.name == *ident)
    }

    fn no_type_arguments(&mut self, path: &syn::Path) {
        for seg in &path.segments {
            if !seg.arguments.is_none() {
                self.cx.error_spanned_by(
                    &seg.arguments,
                    "a task is called without type arguments: tasks are not generic",
                );
            }
        }
    }

    /// A tuple or array of values passed as one argument.
    fn gather(&mut self, expr: &Expr, elems: &Punctuated<Expr, Token![,]>, array: bool, in_map: bool) -> Arg {
        if in_map {
            self.gather_in_map(expr);
        }
        if elems.len() > 8 {
            let what = if array { "array" } else { "tuple" };
            self.cx.error_spanned_by(
                expr,
                format!("a gathered {what} has at most 8 elements: return a `Vec` or a struct from a task instead"),
            );
        }
        let outer = std::mem::replace(&mut self.gathering_in_map, in_map);
        let parts = elems.iter().map(|e| self.arg(e, false, true)).collect();
        self.gathering_in_map = outer;
        Arg::Gather {
            array,
            parts,
            span: expr.span(),
        }
    }

    fn gather_in_map(&mut self, expr: &Expr) {
        self.cx.error_spanned_by(
            expr,
            "a `.map(..)` cannot fan out over a tuple or array of task results: \
             wrap it in `unmapped(..)` to pass it whole to every child, or map over a collection a task returns",
        );
    }

    fn nested(&mut self, expr: &Expr) -> Arg {
        match self.call(expr, None) {
            Some((ident, kind)) => Arg::Name(ident, kind),
            None => Arg::Const(expr.clone()),
        }
    }

    /// `let x = task(..);`. A rejected statement still binds its name (as a single
    /// value), so later uses of it do not pile up errors.
    fn local(&mut self, local: &syn::Local) {
        let (ident, ok) = match &local.pat {
            syn::Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                if let Some(m) = &p.mutability {
                    self.cx
                        .error_spanned_by(m, "task results are immutable: remove `mut`");
                }
                (Some(p.ident.clone()), true)
            }
            syn::Pat::Wild(w) => (Some(Ident::new("_", w.underscore_token.span)), true),
            syn::Pat::Type(t) => {
                self.cx.error_spanned_by(
                    &t.ty,
                    "flow bindings take their type from the task: remove the type annotation",
                );
                match &*t.pat {
                    syn::Pat::Ident(p) => (Some(p.ident.clone()), false),
                    _ => (None, false),
                }
            }
            other => {
                self.cx
                    .error_spanned_by(other, "bind a task result to a plain name: `let x = task(..);`");
                (None, false)
            }
        };
        let kind = match (&local.init, ok) {
            // A pattern that binds no single name: one error is enough.
            (Some(_), false) if ident.is_none() => None,
            (None, _) => {
                self.cx
                    .error_spanned_by(local, "a flow binding needs a task call: `let x = task(..);`");
                None
            }
            (Some(init), ok) => {
                if let Some((_, diverge)) = &init.diverge {
                    self.cx
                        .error_spanned_by(diverge, "`let .. else` has no meaning in a flow");
                }
                let binding = ident.as_ref().filter(|i| ok && *i != "_");
                self.call(&init.expr, binding).map(|(_, kind)| kind)
            }
        };
        if let Some(ident) = ident {
            if ok || self.kind_of(&ident).is_none() {
                self.bind(&ident, kind.unwrap_or(Kind::Single));
            }
        }
    }

    fn bind(&mut self, ident: &Ident, kind: Kind) {
        let name = ident.to_string();
        if name == "_" {
            return;
        }
        if self.names.contains_key(&name) {
            let what = if self.flow.params.iter().any(|p| p.name == name) {
                "a parameter of this flow"
            } else {
                "already bound in this flow"
            };
            self.cx.error_spanned_by(
                ident,
                format!("`{name}` is {what}: give each task result its own name (runs report tasks by it)"),
            );
        }
        self.names.insert(name, kind);
    }
}

/// A call by a snake_case path (`clean(..)`, `tasks::clean(..)`) is a task call inside a
/// flow; `Some(..)`, `String::from(..)` or `Duration::from_secs(..)` are constants.
fn is_task_path(func: &Expr) -> bool {
    match func {
        Expr::Path(p) if p.qself.is_none() => p.path.segments.iter().all(|seg| {
            let name = seg.ident.to_string();
            name.trim_start_matches('_')
                .chars()
                .next()
                .is_some_and(|c| c.is_lowercase())
        }),
        _ => false,
    }
}

/// The path of the first task call (`f(..)` or `f.map(..)`) in an expression, outside
/// blocks and closures.
fn find_task_call(expr: &Expr) -> Option<syn::Path> {
    struct Finder(Option<syn::Path>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr(&mut self, e: &'ast Expr) {
            if self.0.is_some() {
                return;
            }
            match e {
                Expr::Block(_) | Expr::Closure(_) | Expr::Async(_) | Expr::Unsafe(_) => {}
                Expr::Call(c) if is_task_path(&c.func) => {
                    if let Expr::Path(p) = &*c.func {
                        self.0 = Some(p.path.clone());
                    }
                }
                Expr::MethodCall(m) if m.method == "map" && matches!(&*m.receiver, Expr::Path(_)) => {
                    if let Expr::Path(p) = &*m.receiver {
                        self.0 = Some(p.path.clone());
                    }
                }
                other => syn::visit::visit_expr(self, other),
            }
        }
    }
    let mut f = Finder(None);
    f.visit_expr(expr);
    f.0
}

/// Why a statement is not a task call, in the user's terms.
fn not_a_call(expr: &Expr) -> String {
    match expr {
        Expr::Await(_) => {
            "remove `.await`: the engine awaits every task; `my_flow().run().await` runs the flow".to_owned()
        }
        Expr::Try(_) => "remove `?`: a failed task fails its run, and downstream tasks react through their \
                         `trigger`"
            .to_owned(),
        Expr::If(_) | Expr::Match(_) | Expr::While(_) | Expr::ForLoop(_) | Expr::Loop(_) => {
            "a flow has no control flow: decide inside a task, or use a task's `trigger` to run it after \
             failures"
                .to_owned()
        }
        _ => "a flow statement calls a task: `let x = task(..);` or `let xs = task.map(..);`; \
              constants go directly into a task's arguments"
            .to_owned(),
    }
}

/// What to write instead of a reference type: `String` for `&str`, `Vec<T>` for `&[T]`.
fn owned_suggestion(elem: &Type) -> String {
    match elem {
        Type::Path(p) if p.path.is_ident("str") => "String".to_owned(),
        Type::Slice(sl) => format!("Vec<{}>", type_text(&sl.elem)),
        other => type_text(other),
    }
}

fn doc_text(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs {
        if !a.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                lines.push(s.value().trim().to_owned());
            }
        }
    }
    lines.join("\n").trim().to_owned()
}

fn expand_flow(flow: &FlowDecl) -> TokenStream {
    let mut an = Analysis {
        gathering_in_map: false,
        cx: Ctxt::default(),
        names: HashMap::new(),
        calls: Vec::new(),
        counter: 0,
        flow,
    };
    for (k, p) in flow.params.iter().enumerate() {
        if flow.params[..k].iter().any(|q| q.name == p.name) {
            an.cx
                .error_spanned_by(&p.name, format!("duplicate parameter `{}`", p.name));
            continue;
        }
        match &p.default {
            None => an.cx.error_spanned_by(
                &p.name,
                format!(
                    "parameter `{}` needs a default: `{}: {} = ..`, so the flow can run without arguments \
                     (set it per run with `.with_param(\"{0}\", ..)`)",
                    p.name,
                    p.name,
                    type_text(&p.ty)
                ),
            ),
            Some(default) => {
                if let Some(other) = an.mentioned_binding(default) {
                    an.cx.error_at(
                        other.span(),
                        format!(
                            "a parameter's default cannot use parameter `{other}`: defaults are fixed values, \
                             set when the flow is declared"
                        ),
                    );
                }
            }
        }
        if let Type::Reference(r) = &p.ty {
            an.cx.error_spanned_by(
                r,
                format!(
                    "a flow parameter cannot be a reference: parameters are set from JSON per run; \
                     use an owned type such as `{}`",
                    owned_suggestion(&r.elem)
                ),
            );
        }
        an.bind(&p.name, Kind::Single);
    }
    let mut tail = Tail::None;
    let last = flow.body.len().saturating_sub(1);
    for (i, stmt) in flow.body.iter().enumerate() {
        match stmt {
            syn::Stmt::Local(local) => an.local(local),
            syn::Stmt::Expr(expr, semi) => {
                if semi.is_none() && i == last {
                    tail = match expr {
                        Expr::Call(_) | Expr::MethodCall(_) => Tail::Value(an.nested(expr)),
                        Expr::Await(_) | Expr::Try(_) | Expr::If(_) | Expr::Match(_) => {
                            an.cx.error_spanned_by(expr, not_a_call(expr));
                            Tail::None
                        }
                        other => Tail::Value(an.arg(other, false, false)),
                    };
                } else {
                    an.call(expr, None);
                }
            }
            syn::Stmt::Item(item) => an.cx.error_spanned_by(
                item,
                "a flow body holds task calls only: declare items outside `flow!`",
            ),
            syn::Stmt::Macro(m) => an.cx.error_spanned_by(
                &m.mac,
                "a flow body holds task calls only: macros cannot be wired into the graph",
            ),
        }
    }
    // After an earlier mistake, a tail that looks constant is most likely its echo.
    if let (Tail::Value(Arg::Const(e)), false) = (&tail, an.cx.has_errors()) {
        an.cx.error_spanned_by(
            e,
            "a flow ends with a task call or a task result, which becomes its output; \
             a constant output needs no flow",
        );
    }
    if let (Tail::None, Some(out), false) = (&tail, &flow.output, an.cx.has_errors()) {
        an.cx.error_at(
            flow.brace_span,
            format!(
                "flow `{}` declares output `{}`, but its body has no final step; end it with a task call \
                 or a task result, without `;`",
                flow.name,
                type_text(out)
            ),
        );
    }
    let errors = std::mem::take(&mut an.cx).into_compile_errors();
    let generated = generate(flow, &an.calls, &tail);
    match errors {
        Some(errors) => {
            // Still emit the flow function so its callers type-check.
            let fallback = fallback(flow);
            quote! { #errors #fallback }
        }
        None => generated,
    }
}

fn output_type(flow: &FlowDecl) -> TokenStream {
    match &flow.output {
        Some(t) => t.to_token_stream(),
        None => quote!(()),
    }
}

fn companion(flow: &FlowDecl) -> TokenStream {
    let vis = &flow.vis;
    let name = &flow.name;
    let doc = format!("Flow companion of [`{name}()`], used by compile-time checks.");
    quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #name {}
    }
}

fn fallback(flow: &FlowDecl) -> TokenStream {
    let attrs = &flow.attrs;
    let vis = &flow.vis;
    let name = &flow.name;
    let fn_token = &flow.fn_token;
    let out = output_type(flow);
    let companion = companion(flow);
    quote! {
        #companion
        #(#attrs)*
        #vis #fn_token #name() -> ::tideflow::Flow<#out> {
            ::core::unreachable!("this flow did not compile")
        }
    }
}

const P: fn() -> TokenStream = || quote!(::tideflow::__private);

/// The path of the generated code's support module, with every token at `span`, so a
/// check quoted at a user's token stays entirely at that token.
fn p_at(span: Span) -> TokenStream {
    crate::private_at(span)
}

fn generate(flow: &FlowDecl, calls: &[Call], tail: &Tail) -> TokenStream {
    let p = P();
    let attrs = &flow.attrs;
    let vis = &flow.vis;
    let name = &flow.name;
    let fn_token = &flow.fn_token;
    let name_text = name.to_string();
    let description = doc_text(&flow.attrs);
    let out = output_type(flow);
    let companion = companion(flow);

    let mut body = TokenStream::new();
    for param in &flow.params {
        let ident = &param.name;
        let ty = &param.ty;
        let ty_text = type_text(ty);
        let pname = ident.to_string();
        let Some(default) = &param.default else { continue };
        let dspan = default.span();
        let typed_default = quote_spanned! {dspan=> let __tideflow_default: #ty = #default; };
        let tspan = ty.span();
        let pt = p_at(tspan);
        let declare = quote_spanned! {tspan=>
            <#ty as #pt::FlowParam<#name>>::declare(&mut __tideflow_b, #pname, #ty_text, __tideflow_default)
        };
        body.extend(quote! {
            #[allow(unused_variables)]
            let #ident = {
                #typed_default
                #declare
            };
        });
    }
    for call in calls {
        body.extend(expand_call(call));
    }
    let finish = match tail {
        Tail::None => quote! { #p::FlowBuilder::finish::<()>(__tideflow_b, ::core::option::Option::None) },
        Tail::Value(arg) => {
            let span = arg.span();
            let ps = p_at(span);
            let value = whole_arg(arg, &quote!(#name));
            let output = match &flow.output {
                Some(_) => quote_spanned! {span=> <_ as #ps::FlowOutput<#out, #name>>::output(#value) },
                None => quote_spanned! {span=> <_ as #ps::NoOutput<#name>>::output(#value) },
            };
            quote! {
                let __tideflow_out = #output;
                #p::FlowBuilder::finish::<#out>(__tideflow_b, ::core::option::Option::Some(__tideflow_out))
            }
        }
    };
    quote! {
        #companion

        #(#attrs)*
        #[allow(clippy::let_unit_value)]
        #vis #fn_token #name() -> ::tideflow::Flow<#out> {
            let mut __tideflow_b = #p::FlowBuilder::new(#name_text, #description);
            #body
            #finish
        }
    }
}

/// The task's parameter type `index`, through the arity check (spanned at the task name).
fn expected(call: &Call, index: usize) -> TokenStream {
    let span = task_span(call);
    let p = p_at(span);
    let n = spanned_len(call.args.len(), span);
    let assoc = format_ident!("A{}", index, span = span);
    quote_spanned! {span=>
        <<__TideflowTask as #p::Task>::Sig as #p::Arity<#n, __TideflowTask>>::#assoc
    }
}

/// A `usize` literal at `span` (interpolating a number would put it at the macro call).
fn spanned_len(n: usize, span: Span) -> proc_macro2::Literal {
    let mut lit = proc_macro2::Literal::usize_unsuffixed(n);
    lit.set_span(span);
    lit
}

fn task_span(call: &Call) -> Span {
    call.task
        .segments
        .last()
        .map_or_else(|| call.task.span(), |s| s.ident.span())
}

fn expand_call(call: &Call) -> TokenStream {
    let binding = &call.binding;
    let task = &call.task;
    let report = &call.report_name;
    let span = task_span(call);
    let mut args = TokenStream::new();
    let mut inputs = Vec::new();
    let mapped = call.map.is_some();
    for (i, arg) in call.args.iter().enumerate() {
        let a = format_ident!("__tideflow_a{}", i);
        let expected = expected(call, i);
        args.extend(if mapped {
            mapped_arg(&a, arg, &expected)
        } else {
            whole_checked(&a, arg, &expected)
        });
        let p = p_at(arg.span());
        inputs.push(quote_spanned!(arg.span()=> #p::Arg::into_input(#a)));
    }
    let after = call.after.iter().map(|d| {
        let p = p_at(d.span());
        quote_spanned! {d.span()=> #p::Dependency::node(&#d) }
    });
    let method = if mapped { quote!(map) } else { quote!(task) };
    let n = spanned_len(call.args.len(), span);
    // One obligation carries the arity, at the task's name: a wrong count is one error.
    let ps = p_at(span);
    let arity = quote_spanned! {span=>
        let _: #ps::PhantomData<<<__TideflowTask as #ps::Task>::Sig as #ps::Arity<#n, __TideflowTask>>::A0> = #ps::PhantomData;
    };
    let alias = quote_spanned! {span=> type __TideflowTask = #task; };
    // At the task's name too, so a non-task is reported once, there.
    let add = quote_spanned! {span=>
        #ps::FlowBuilder::#method::<__TideflowTask>(
            &mut __tideflow_b,
            #report,
            ::std::vec![#(#inputs),*],
            ::std::vec![#(#after),*],
        )
    };
    quote! {
        #[allow(unused_variables)]
        let #binding = {
            #alias
            #arity
            #args
            #add
        };
    }
}

/// An argument of a non-mapped call (or inside `unmapped(..)`), checked against `expected`.
fn whole_checked(a: &Ident, arg: &Arg, expected: &TokenStream) -> TokenStream {
    let span = arg.span();
    let p = p_at(span);
    match arg {
        Arg::Unmapped(inner) => whole_checked(a, inner, expected),
        Arg::Const(e) => {
            let text = crate::task::expr_text(e);
            quote_spanned! {span=>
                let #a: #expected = #e;
                let #a = #p::constant(#a, #text);
            }
        }
        Arg::Name(ident, Kind::Mapped) => quote_spanned! {span=>
            let #a = #p::reduce(&#ident);
            let __tideflow_fit =
                <_ as #p::MappedInput<#expected, __TideflowTask>>::check(#p::Arg::payload(&#a));
            <_ as #p::ReducedFits<#expected, __TideflowTask>>::check(__tideflow_fit);
        },
        Arg::Name(..) | Arg::Gather { .. } => {
            let value = whole_arg(arg, &quote_spanned!(span=> __TideflowTask));
            quote_spanned! {span=>
                            let #a = #value;
            <_ as #p::TaskInput<#expected, __TideflowTask>>::check(#p::Arg::payload(&#a));
                        }
        }
    }
}

/// An argument as one whole value (no check): a name, a mapped name collected into a
/// `Vec`, a gathered tuple or array, a constant.
fn whole_arg(arg: &Arg, tk: &TokenStream) -> TokenStream {
    let span = arg.span();
    let p = p_at(span);
    match arg {
        Arg::Name(ident, Kind::Single) => quote_spanned! {span=> #p::whole(&#ident) },
        Arg::Name(ident, Kind::Mapped) => quote_spanned! {span=> #p::collect(&#ident) },
        Arg::Unmapped(inner) => whole_arg(inner, tk),
        Arg::Const(e) => {
            let text = crate::task::expr_text(e);
            quote_spanned! {span=> #p::constant(#e, #text) }
        }
        Arg::Gather {
            array: true, parts, ..
        } => {
            let f = format_ident!("gather{}", parts.len().clamp(1, 8), span = span);
            let parts = parts.iter().map(|part| whole_arg(part, tk));
            quote_spanned! {span=> <_ as #p::Uniform<#tk>>::array(#p::#f(#(#parts),*)) }
        }
        Arg::Gather {
            array: false, parts, ..
        } => {
            let f = format_ident!("gather{}", parts.len().clamp(1, 8), span = span);
            let parts = parts.iter().map(|part| whole_arg(part, tk));
            quote_spanned! {span=> #p::#f(#(#parts),*) }
        }
    }
}

/// An argument of a `.map(..)` call, checked against the element type `expected`.
fn mapped_arg(a: &Ident, arg: &Arg, expected: &TokenStream) -> TokenStream {
    let span = arg.span();
    let p = p_at(span);
    let elem_check = quote_spanned! {span=>
        <_ as #p::MapElement<#expected, __TideflowTask>>::check(#p::Arg::payload(&#a));
    };
    match arg {
        Arg::Unmapped(inner) => whole_checked(a, inner, expected),
        Arg::Name(ident, Kind::Single) => {
            let fan = quote_spanned! {span=> let #a = <_ as #p::MapOver<__TideflowTask>>::fan_out(&#ident); };
            quote! { #fan #elem_check }
        }
        Arg::Name(ident, Kind::Mapped) => {
            let zip = quote_spanned! {span=> let #a = #p::zip(&#ident); };
            quote! { #zip #elem_check }
        }
        Arg::Const(e) => {
            let text = crate::task::expr_text(e);
            let fan = quote_spanned! {span=>
                let #a = <_ as #p::MapOver<__TideflowTask>>::fan_out_const(#e, #text);
            };
            quote! { #fan #elem_check }
        }
        // Reported by the analysis; emit the whole value so nothing cascades.
        Arg::Gather { .. } => whole_checked(a, arg, expected),
    }
}
