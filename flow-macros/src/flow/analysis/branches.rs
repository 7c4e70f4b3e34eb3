//! `if` in a flow: a gate task per branch that every task call of the branch runs after,
//! each branch's bindings ending with it, and, when the `if` gives a value, a merge task
//! that passes on the value of the branch that ran.

use proc_macro2::Span;
use syn::{Expr, Ident};

use super::{is_task_path, Analysis};
use crate::flow::steps::{Arg, Gate, Kind, Merge, Step};
use crate::task::expr_text;

/// The condition of an `if`.
struct Condition {
    /// A parameter or task result (or a constant).
    arg: Arg,
    /// Written `!cond`.
    negated: bool,
    /// The condition without its negation, as written.
    text: String,
}

impl Analysis<'_> {
    /// An `if`. `value`: the `if` gives a value (with the binding it is stored in, if
    /// any); `None` for a statement. Returns the binding of the value.
    pub(super) fn if_expr(&mut self, e: &syn::ExprIf, value: Option<Option<&Ident>>) -> Option<Ident> {
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
        let written = expr_text(&e.cond);
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
                    None => Some(named(Arg::constant(expr), ident.to_string())),
                },
                None => Some(named(Arg::constant(expr), expr_text(expr))),
            },
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Bool(_),
                ..
            }) => Some(named(Arg::constant(expr), expr_text(expr))),
            Expr::Call(c) if is_task_path(&c.func) => self.condition_call(expr),
            Expr::MethodCall(m) if m.method == "map" || m.method == "after" => self.condition_call(expr),
            other => {
                let text = expr_text(other);
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
        let text = expr_text(expr);
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
}
