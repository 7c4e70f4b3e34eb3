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

use std::collections::{HashMap, HashSet};

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

#[derive(Clone)]
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

/// One item the flow declares, in order.
enum Step {
    Call(Call),
    /// The gate of one branch of an `if`.
    Gate(Gate),
    /// The body of one branch, in a Rust block of its own; in an `if` that gives a
    /// value, the binding the branch's value is stored in, and that value.
    Branch {
        steps: Vec<Step>,
        value: Option<(Ident, Arg)>,
    },
    /// The merge of the branches of an `if` that gives a value.
    Merge(Merge),
}

/// A branch's gate: succeeds when the condition is `when`, skips the branch otherwise.
struct Gate {
    binding: Ident,
    /// How runs report it: `if flag`, `else flag`.
    name: String,
    condition: Arg,
    /// The condition as written, without a negation (for the skip message).
    text: String,
    when: bool,
    /// Emit the check that the condition is a `bool` (on the first gate of an `if` only).
    check: bool,
    /// The gate of the enclosing branch.
    after: Option<Ident>,
}

/// The value of whichever branch ran.
struct Merge {
    binding: Ident,
    /// How runs report it: the user's binding, or `merge flag`.
    name: String,
    /// Each branch: its gate, the binding of its value, and where the value is written.
    parts: Vec<(Ident, Ident, Span)>,
}

/// The condition of an `if`.
struct Condition {
    /// A parameter or task result (or a constant).
    arg: Arg,
    /// Written `!cond`.
    negated: bool,
    /// The condition without its negation, as written.
    text: String,
}

/// The flow's final value.
enum Tail {
    None,
    Value(Arg),
}

struct Analysis<'a> {
    cx: Ctxt,
    /// The names in scope.
    names: HashMap<String, Kind>,
    /// Every name bound anywhere in the flow (runs report tasks by it).
    bound: HashSet<String>,
    /// The items of the block being read.
    steps: Vec<Step>,
    /// The gate of the branch being read, if any.
    gate: Option<Ident>,
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
        let mut after = after;
        after.extend(self.gate.clone());
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
                self.not_a_call(other);
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
        self.steps.push(Step::Call(Call {
            binding: ident.clone(),
            report_name,
            task,
            map,
            args,
            after,
        }));
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
                match &*init.expr {
                    Expr::If(e) => self.if_expr(e, Some(binding)).map(|_| Kind::Single),
                    other => self.call(other, binding).map(|(_, kind)| kind),
                }
            }
        };
        if let Some(ident) = ident {
            if ok || self.kind_of(&ident).is_none() {
                self.bind(&ident, kind.unwrap_or(Kind::Single));
            }
        }
    }

    /// A block of flow statements. With `value`, its final expression (without `;`) is
    /// the block's value; otherwise it is one more statement.
    fn statements(&mut self, stmts: &[syn::Stmt], value: bool) -> Option<Arg> {
        let last = stmts.len().saturating_sub(1);
        let mut out = None;
        for (i, stmt) in stmts.iter().enumerate() {
            match stmt {
                syn::Stmt::Local(local) => self.local(local),
                syn::Stmt::Expr(expr, semi) => {
                    if value && semi.is_none() && i == last {
                        out = self.value_expr(expr);
                    } else {
                        self.statement(expr);
                    }
                }
                syn::Stmt::Item(item) => self.cx.error_spanned_by(
                    item,
                    "a flow body holds task calls only: declare items outside `flow!`",
                ),
                syn::Stmt::Macro(m) => self.cx.error_spanned_by(
                    &m.mac,
                    "a flow body holds task calls only: macros cannot be wired into the graph",
                ),
            }
        }
        out
    }

    /// An expression statement: a task call, or an `if` whose value is not used.
    fn statement(&mut self, expr: &Expr) {
        match expr {
            Expr::If(e) => {
                self.if_expr(e, None);
            }
            other => {
                self.call(other, None);
            }
        }
    }

    /// The final expression of a block whose value is used.
    fn value_expr(&mut self, expr: &Expr) -> Option<Arg> {
        match expr {
            Expr::If(e) => self.if_expr(e, Some(None)).map(|m| Arg::Name(m, Kind::Single)),
            // `Vec::new()`, `Some(..)`: a constant.
            Expr::Call(c) if !is_task_path(&c.func) => Some(self.arg(expr, false, false)),
            Expr::Call(_) | Expr::MethodCall(_) => Some(self.nested(expr)),
            Expr::Await(_)
            | Expr::Try(_)
            | Expr::Match(_)
            | Expr::While(_)
            | Expr::ForLoop(_)
            | Expr::Loop(_) => {
                self.not_a_call(expr);
                None
            }
            other => Some(self.arg(other, false, false)),
        }
    }

    /// An `if`. `value`: the `if` gives a value (with the binding it is stored in, if
    /// any); `None` for a statement. Returns the binding of the value.
    fn if_expr(&mut self, e: &syn::ExprIf, value: Option<Option<&Ident>>) -> Option<Ident> {
        let mut parts = Vec::new();
        let text = self.if_chain(e, value.is_some(), &mut parts);
        let binding = value?;
        let if_span = e.if_token.span;
        let (binding, name) = match binding {
            Some(b) => (b.clone(), b.to_string()),
            None => {
                self.counter += 1;
                (
                    Ident::new(&format!("__tideflow_merge{}", self.counter), if_span),
                    format!("merge {text}"),
                )
            }
        };
        self.steps.push(Step::Merge(Merge {
            binding: binding.clone(),
            name,
            parts,
        }));
        Some(binding)
    }

    /// The gates and branches of `e` and of its `else if`s; when the `if` gives a value,
    /// each branch's gate and value go to `parts`. Returns the condition as written.
    fn if_chain(&mut self, e: &syn::ExprIf, value: bool, parts: &mut Vec<(Ident, Ident, Span)>) -> String {
        let written = crate::task::expr_text(&e.cond);
        let cond = self.condition(&e.cond);
        let outer = self.gate.clone();
        let then_gate = self.gate_step(
            format!("if {written}"),
            cond.as_ref(),
            true,
            e.if_token.span,
            outer.clone(),
        );
        self.branch(&e.then_branch, then_gate, value, parts);
        match &e.else_branch {
            None if value => self.cx.error_at(
                e.if_token.span,
                format!(
                    "this `if` has no `else`, so it has no value when `{written}` is false: add an `else` branch \
                     that gives a value of the same type, or use the `if` as a statement"
                ),
            ),
            None => {}
            Some((else_token, else_expr)) => {
                let else_gate = self.gate_step(
                    format!("else {written}"),
                    cond.as_ref(),
                    false,
                    else_token.span,
                    outer,
                );
                match &**else_expr {
                    // `else if`: its gates run after this `else`'s, and its branches
                    // join this `if`'s value.
                    Expr::If(nested) => {
                        let outer = self.gate.replace(else_gate);
                        self.if_chain(nested, value, parts);
                        self.gate = outer;
                    }
                    Expr::Block(b) => self.branch(&b.block, else_gate, value, parts),
                    other => self
                        .cx
                        .error_spanned_by(other, "`else` is followed by a block or by `if`"),
                }
            }
        }
        written
    }

    /// A branch's gate: `then` for the branch taken when the condition holds.
    fn gate_step(
        &mut self,
        name: String,
        cond: Option<&Condition>,
        then: bool,
        span: Span,
        after: Option<Ident>,
    ) -> Ident {
        self.counter += 1;
        let binding = Ident::new(&format!("__tideflow_gate{}", self.counter), span);
        if let Some(c) = cond {
            self.steps.push(Step::Gate(Gate {
                binding: binding.clone(),
                name,
                condition: c.arg.clone(),
                text: c.text.clone(),
                when: then != c.negated,
                check: then,
                after,
            }));
        }
        binding
    }

    /// One branch: its statements run after `gate`, and its bindings end with it.
    fn branch(
        &mut self,
        block: &syn::Block,
        gate: Ident,
        value: bool,
        parts: &mut Vec<(Ident, Ident, Span)>,
    ) {
        let names = self.names.clone();
        let outer_gate = self.gate.replace(gate.clone());
        let outer_steps = std::mem::take(&mut self.steps);
        let result = self.statements(&block.stmts, value);
        let steps = std::mem::replace(&mut self.steps, outer_steps);
        self.gate = outer_gate;
        self.names = names;
        let value = match (value, result) {
            (false, _) => None,
            (true, Some(arg)) => {
                if let Arg::Name(_, Kind::Mapped) = arg {
                    self.cx.error_at(
                        arg.span(),
                        "this branch gives a mapped result (one value per child of a `.map(..)`), but an `if` \
                         gives one value: reduce it first with a task that takes a `Vec`, and end the branch \
                         with that task's result",
                    );
                }
                self.counter += 1;
                let span = arg.span();
                let ident = Ident::new(&format!("__tideflow_value{}", self.counter), span);
                parts.push((gate, ident.clone(), span));
                Some((ident, arg))
            }
            (true, None) => {
                match block.stmts.last() {
                    Some(syn::Stmt::Expr(_, Some(semi))) => self.cx.error_spanned_by(
                        semi,
                        "the value of this `if` is used, but this branch ends with `;`: remove it to make \
                         the last task call the branch's value",
                    ),
                    // A final expression that is not a value: already reported.
                    Some(syn::Stmt::Expr(_, None)) => {}
                    _ => self.cx.error_at(
                        block.brace_token.span.close(),
                        "the value of this `if` is used, but this branch gives no value: end it with a task \
                         call or a task result, without `;`",
                    ),
                }
                None
            }
        };
        self.steps.push(Step::Branch { steps, value });
    }

    /// The condition of an `if`: a `bool` parameter or task result, a task call
    /// returning `bool`, or `!` of one of these.
    fn condition(&mut self, expr: &Expr) -> Option<Condition> {
        let named = |arg: Arg, text: String| Condition {
            arg,
            negated: false,
            text,
        };
        match expr {
            Expr::Paren(p) => self.condition(&p.expr),
            Expr::Group(g) => self.condition(&g.expr),
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Not(_)) => {
                let mut c = self.condition(&u.expr)?;
                c.negated = !c.negated;
                Some(c)
            }
            Expr::Let(l) => {
                self.cx.error_spanned_by(
                    l.let_token,
                    "`if let` is not flow syntax: a flow branches with `if` on a task's `bool` result or a \
                     `bool` parameter; look inside the value in a task that returns `bool`",
                );
                None
            }
            Expr::Path(p) if p.qself.is_none() => match p.path.get_ident() {
                Some(ident) => match self.kind_of(ident) {
                    Some(Kind::Single) => {
                        Some(named(Arg::Name(ident.clone(), Kind::Single), ident.to_string()))
                    }
                    Some(Kind::Mapped) => {
                        self.cx.error_spanned_by(
                            ident,
                            format!(
                                "`{ident}` is a mapped result, one value per child of a `.map(..)`, but an `if` \
                                 branches on one `bool`: reduce it first with a task that takes `Vec<bool>` \
                                 (e.g. `let any = any_true({ident});`) and branch on that task's result"
                            ),
                        );
                        None
                    }
                    // A constant, or a name rustc reports as unknown.
                    None => Some(named(Arg::Const(expr.clone()), ident.to_string())),
                },
                None => Some(named(Arg::Const(expr.clone()), crate::task::expr_text(expr))),
            },
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Bool(_),
                ..
            }) => Some(named(Arg::Const(expr.clone()), crate::task::expr_text(expr))),
            Expr::Call(c) if is_task_path(&c.func) => self.condition_call(expr),
            Expr::MethodCall(m) if m.method == "map" || m.method == "after" => self.condition_call(expr),
            other => {
                let text = crate::task::expr_text(other);
                self.cx.error_spanned_by(
                    other,
                    format!(
                        "an `if` in a flow branches on a task's `bool` result or a `bool` parameter, not on an \
                         expression: compute `{text}` in a task that returns `bool`, and branch on that task's result"
                    ),
                );
                None
            }
        }
    }

    /// A task call as the condition: called first, like a nested call.
    fn condition_call(&mut self, expr: &Expr) -> Option<Condition> {
        let text = crate::task::expr_text(expr);
        match self.call(expr, None)? {
            (ident, Kind::Single) => Some(Condition {
                arg: Arg::Name(ident, Kind::Single),
                negated: false,
                text,
            }),
            (ident, Kind::Mapped) => {
                self.cx.error_at(
                    ident.span(),
                    format!(
                        "`{text}` gives one value per element, but an `if` branches on one `bool`: reduce the \
                         results with a task that takes `Vec<bool>` and branch on that task's result"
                    ),
                );
                None
            }
        }
    }

    /// Reports an expression that is not flow syntax: at the keyword of a `match` or a
    /// loop, else on the whole expression.
    fn not_a_call(&mut self, expr: &Expr) {
        let message = not_a_call(expr);
        match expr {
            Expr::Match(m) => self.cx.error_spanned_by(m.match_token, message),
            Expr::While(w) => self.cx.error_spanned_by(w.while_token, message),
            Expr::ForLoop(f) => self.cx.error_spanned_by(f.for_token, message),
            Expr::Loop(l) => self.cx.error_spanned_by(l.loop_token, message),
            other => self.cx.error_spanned_by(other, message),
        }
    }

    fn bind(&mut self, ident: &Ident, kind: Kind) {
        let name = ident.to_string();
        if name == "_" {
            return;
        }
        if self.names.contains_key(&name) || self.bound.contains(&name) {
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
        self.bound.insert(name.clone());
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
        Expr::Match(_) => {
            "`match` is not flow syntax: a flow branches with `if` on a task's `bool` result or a \
             `bool` parameter; match inside a task, or compute the decision in a task that returns `bool`"
                .to_owned()
        }
        Expr::While(_) | Expr::ForLoop(_) | Expr::Loop(_) => {
            "a flow has no loops: run a task once per element with `task.map(xs)`, or loop inside a task"
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
        bound: HashSet::new(),
        steps: Vec::new(),
        gate: None,
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
    // A flow without an output that ends with an `if` ends with a statement.
    let value =
        flow.output.is_some() || !matches!(flow.body.last(), Some(syn::Stmt::Expr(Expr::If(_), None)));
    let tail = match an.statements(&flow.body, value) {
        Some(arg) => Tail::Value(arg),
        None => Tail::None,
    };
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
    match std::mem::take(&mut an.cx).into_compile_errors() {
        Some(errors) => {
            // Still emit the flow function so its callers type-check.
            let fallback = fallback(flow);
            quote! { #errors #fallback }
        }
        None => generate(flow, &an.steps, &tail),
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

fn generate(flow: &FlowDecl, steps: &[Step], tail: &Tail) -> TokenStream {
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
    body.extend(expand_steps(steps, name));
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
    let subflow = subflow_task(flow);
    // The graph is built by the companion, so that the subflow task reaches it through the
    // type (a function of the same name elsewhere cannot capture the call).
    quote! {
        #companion
        impl #name {
            #[doc(hidden)]
            #[allow(clippy::let_unit_value)]
            pub fn __tideflow_flow() -> ::tideflow::Flow<#out> {
                let mut __tideflow_b = #p::FlowBuilder::new(#name_text, #description);
                #body
                #finish
            }
        }
        #subflow

        #(#attrs)*
        #vis #fn_token #name() -> ::tideflow::Flow<#out> {
            #name::__tideflow_flow()
        }
    }
}

fn expand_steps(steps: &[Step], flow: &Ident) -> TokenStream {
    steps.iter().map(|step| expand_step(step, flow)).collect()
}

fn expand_step(step: &Step, flow: &Ident) -> TokenStream {
    let p = P();
    match step {
        Step::Call(call) => expand_call(call),
        Step::Gate(gate) => expand_gate(gate, flow),
        Step::Branch { steps, value: None } => {
            let body = expand_steps(steps, flow);
            quote! { { #body } }
        }
        Step::Branch {
            steps,
            value: Some((binding, arg)),
        } => {
            let body = expand_steps(steps, flow);
            let value = whole_arg(arg, &quote!(#flow));
            quote! {
                #[allow(unused_variables)]
                let #binding = { #body #value };
            }
        }
        Step::Merge(merge) => {
            let binding = &merge.binding;
            let name = &merge.name;
            let mut checks = TokenStream::new();
            if let Some((_, first, _)) = merge.parts.first() {
                // Every later branch gives the first branch's type, checked at its value
                // once both types are known.
                checks.extend(quote! { let __tideflow_first = #p::Arg::payload(&#first); });
                for (_, v, span) in &merge.parts[1..] {
                    let ps = p_at(*span);
                    checks.extend(quote_spanned! {*span=>
                        let #v = <_ as #ps::BranchValue<_, #flow>>::value(__tideflow_first, #v);
                    });
                }
            }
            let parts = merge.parts.iter().map(|(g, v, _)| quote!((#g, #v)));
            quote! {
                #[allow(unused_variables)]
                let #binding = {
                    #checks
                    #p::FlowBuilder::merge(&mut __tideflow_b, #name, ::std::vec![#(#parts),*])
                };
            }
        }
    }
}

/// A branch's gate; the first gate of an `if` checks that the condition is a `bool`.
fn expand_gate(gate: &Gate, flow: &Ident) -> TokenStream {
    let p = P();
    let span = gate.condition.span();
    let pc = p_at(span);
    let condition = match &gate.condition {
        Arg::Const(e) => {
            let text = crate::task::expr_text(e);
            quote_spanned! {span=>
                let __tideflow_c: ::core::primitive::bool = #e;
                let __tideflow_c = #pc::constant(__tideflow_c, #text);
            }
        }
        arg => {
            let value = whole_arg(arg, &quote!(#flow));
            let check = if gate.check {
                quote_spanned! {span=> <_ as #pc::IfCondition<#flow>>::check(#pc::Arg::payload(&__tideflow_c)); }
            } else {
                TokenStream::new()
            };
            quote_spanned! {span=>
                let __tideflow_c = #value;
                #check
            }
        }
    };
    let binding = &gate.binding;
    let name = &gate.name;
    let text = &gate.text;
    let when = gate.when;
    let after = gate.after.iter().map(|g| quote!(#p::Dependency::node(&#g)));
    quote! {
        #[allow(unused_variables)]
        let #binding = {
            #condition
            #p::FlowBuilder::gate(&mut __tideflow_b, #name, __tideflow_c, #text, #when, ::std::vec![#(#after),*])
        };
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

/// The flow as a task of other flows (a subflow): its companion implements `Task`, with
/// the flow's parameters, in order, as the task's parameters and its output as the task's.
/// Calling it runs the flow as its own flow run, kept in the parent's run result.
fn subflow_task(flow: &FlowDecl) -> TokenStream {
    let p = P();
    let name = &flow.name;
    let name_text = name.to_string();
    let out = output_type(flow);
    let out_text = match &flow.output {
        Some(t) => type_text(t),
        None => "()".to_owned(),
    };
    let param_tys: Vec<&Type> = flow.params.iter().map(|p| &p.ty).collect();
    let param_names: Vec<String> = flow.params.iter().map(|p| p.name.to_string()).collect();
    let param_texts: Vec<String> = param_tys.iter().map(|t| type_text(t)).collect();
    quote! {
        const _: () = {
            #[diagnostic::do_not_recommend]
            impl #p::Task for #name {
                type Output = #out;
                type Sig = fn(#(#param_tys),*) -> #out;
                const DEF: &'static #p::TaskDef = &#p::TaskDef {
                    name: #name_text,
                    key: ::core::concat!(::core::module_path!(), "::", #name_text),
                    options: #p::TaskOptions {
                        local: true,
                        ..#p::TaskOptions::DEFAULT
                    },
                    params: &[#(#p::TaskParam { name: #param_names, ty: #param_texts }),*],
                    output: #out_text,
                    body: {
                        fn __tideflow_subflow(
                            __tideflow_values: #p::Vec<#p::Value>,
                            __tideflow_ctx: #p::TaskContext,
                        ) -> #p::SubflowFuture {
                            #p::Flow::run_as_subflow(#name::__tideflow_flow(), __tideflow_values, __tideflow_ctx)
                        }
                        #p::TaskBody::Subflow(__tideflow_subflow)
                    },
                    codec: ::core::option::Option::None,
                };
            }
        };
    }
}
