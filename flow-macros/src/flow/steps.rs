//! What the analysis of one flow hands to the expansion: its steps in order, each
//! argument resolved to a kind, and the flow's final value.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, Ident};

/// One flow, analysed: everything the expansion needs besides the declaration.
pub(super) struct Analysed {
    pub(super) steps: Vec<Step>,
    pub(super) tail: Tail,
}

/// What a name in the flow stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    /// A parameter or a task result.
    Single,
    /// The results of a mapped task.
    Mapped,
}

/// One task call, after nested calls have been hoisted out of its arguments.
pub(super) struct Call {
    /// The binding it is stored in (the user's, or a generated one).
    pub(super) binding: Ident,
    /// The name runs report it under ("" for an unbound call: the task's name).
    pub(super) report_name: String,
    pub(super) task: syn::Path,
    /// The `map` token of a `.map(..)` call.
    pub(super) map: Option<Ident>,
    pub(super) args: Vec<Arg>,
    pub(super) after: Vec<Ident>,
}

impl Call {
    /// The task's name as written, where the checks of the call point.
    pub(super) fn task_span(&self) -> Span {
        task_name_span(&self.task)
    }
}

/// The span of the last segment of a task's path: `clean` in `tasks::clean`.
pub(super) fn task_name_span(task: &syn::Path) -> Span {
    task.segments
        .last()
        .map_or_else(|| task.span(), |s| s.ident.span())
}

#[derive(Clone)]
pub(super) enum Arg {
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
    Const(Box<Expr>),
}

impl Arg {
    pub(super) fn constant(expr: &Expr) -> Arg {
        Arg::Const(Box::new(expr.clone()))
    }

    pub(super) fn span(&self) -> Span {
        match self {
            Arg::Name(i, _) => i.span(),
            Arg::Unmapped(inner) => inner.span(),
            Arg::Gather { span, .. } => *span,
            Arg::Const(e) => e.span(),
        }
    }
}

/// One item the flow declares, in order.
pub(super) enum Step {
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
pub(super) struct Gate {
    pub(super) binding: Ident,
    /// How runs report it: `if flag`, `else flag`.
    pub(super) name: String,
    pub(super) condition: Arg,
    /// The condition as written, without a negation (for the skip message).
    pub(super) text: String,
    pub(super) when: bool,
    /// Emit the check that the condition is a `bool` (on the first gate of an `if` only).
    pub(super) check: bool,
    /// The gate of the enclosing branch.
    pub(super) after: Option<Ident>,
}

/// The value of whichever branch ran.
pub(super) struct Merge {
    pub(super) binding: Ident,
    /// How runs report it: the user's binding, or `merge flag`.
    pub(super) name: String,
    /// Each branch: its gate, the binding of its value, and where the value is written.
    pub(super) parts: Vec<(Ident, Ident, Span)>,
}

/// The flow's final value.
pub(super) enum Tail {
    None,
    Value(Arg),
}
