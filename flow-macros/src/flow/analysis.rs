//! Name resolution and the checks that need no types: what each name in a flow stands
//! for (a parameter, a task result, a mapped result, or nothing the flow binds), which
//! statements are flow syntax, and every mistake visible from syntax alone, collected in
//! a [`Ctxt`] so the user sees them all at once. The result is the flow's steps, with
//! each argument's kind, for the expansion.

use std::collections::{HashMap, HashSet};

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, Ident, Token, Type};

use super::parse::FlowDecl;
use super::steps::{task_name_span, Analysed, Arg, Call, Kind, Step, Tail};
use crate::ctxt::Ctxt;
use crate::task::type_text;

mod branches;

/// Resolves every name of `flow` and checks what syntax shows; returns its steps, or
/// the `compile_error!`s for every mistake found.
pub(super) fn analyse(flow: &FlowDecl) -> Result<Analysed, TokenStream> {
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
    an.params();
    let tail = an.body();
    match an.cx.into_compile_errors() {
        Some(errors) => Err(errors),
        None => Ok(Analysed {
            steps: an.steps,
            tail,
        }),
    }
}

/// The state of reading one flow, statement by statement.
struct Analysis<'a> {
    /// The mistakes found so far.
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
    /// Numbers the generated bindings (`__tideflow_step3`, `__tideflow_gate4`, ..).
    counter: usize,
    flow: &'a FlowDecl,
}

impl Analysis<'_> {
    /// Checks the parameters and binds their names.
    fn params(&mut self) {
        let flow = self.flow;
        for (k, p) in flow.params.iter().enumerate() {
            if flow.params[..k].iter().any(|q| q.name == p.name) {
                self.cx
                    .error_spanned_by(&p.name, format!("duplicate parameter `{}`", p.name));
                continue;
            }
            match &p.default {
                // A required parameter: every run sets it.
                None => {}
                Some(default) => {
                    if let Some(other) = self.mentioned_binding(default) {
                        self.cx.error_at(
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
                self.cx.error_spanned_by(
                    r,
                    format!(
                        "a flow parameter cannot be a reference: parameters are set from JSON per run; \
                         use an owned type such as `{}`",
                        owned_suggestion(&r.elem)
                    ),
                );
            }
            self.bind(&p.name, Kind::Single);
        }
    }

    /// The flow's statements, and the step that gives its output.
    fn body(&mut self) -> Tail {
        let flow = self.flow;
        // A flow without an output that ends with an `if` ends with a statement.
        let value =
            flow.output.is_some() || !matches!(flow.body.last(), Some(syn::Stmt::Expr(Expr::If(_), None)));
        let tail = match self.statements(&flow.body, value) {
            Some(arg) => Tail::Value(arg),
            None => Tail::None,
        };
        // After an earlier mistake, a tail that looks constant is most likely its echo.
        if let (Tail::Value(Arg::Const(e)), false) = (&tail, self.cx.has_errors()) {
            self.cx.error_spanned_by(
                e,
                "a flow ends with a task call or a task result, which becomes its output; \
                 a constant output needs no flow",
            );
        }
        if let (Tail::None, Some(out), false) = (&tail, &flow.output, self.cx.has_errors()) {
            self.cx.error_at(
                flow.brace_span,
                format!(
                    "flow `{}` declares output `{}`, but its body has no final step; end it with a task call \
                     or a task result, without `;`",
                    flow.name,
                    type_text(out)
                ),
            );
        }
        tail
    }

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
                (
                    Ident::new(&format!("__tideflow_step{}", self.counter), task_name_span(&task)),
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
                    return Arg::constant(expr);
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
                    return Arg::constant(expr);
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
            return Arg::constant(expr);
        }
        if let Some(b) = self.mentioned_binding(expr) {
            let what = if self.is_param(&b) {
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
        Arg::constant(expr)
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
            None => Arg::constant(expr),
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
            let what = if self.is_param(ident) {
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
