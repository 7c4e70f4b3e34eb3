//! The traits whose bounds check a flow's wiring at compile time.
//!
//! `flow!` emits one fully qualified call per argument, spanned at the user's token, e.g.
//! `<_ as TaskInput<_, clean>>::check(offered, expected)`. Each trait has a single impl
//! that holds exactly when the wiring is right, so a mistake is an `E0277` whose message
//! (below) names the task and both types. Not public API.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::marker::PhantomData;

use crate::builder::{self, Arg, FlowBuilder, Single};
use crate::graph::Source;
use crate::value::{self, Value};

/// A value offered to a task parameter of type `E`.
///
/// A single impl, so a mismatch reports only this trait's message (a second impl, e.g.
/// for `Vec<E>`, would make rustc show it, with library source, under every mismatch of a
/// `Vec`).
#[diagnostic::on_unimplemented(
    message = "task `{Tk}` expects `{E}` for this argument, but it is a `{Self}`",
    label = "expected `{E}`, found `{Self}`",
    note = "this parameter of `{Tk}` has type `{E}`; the value passed here is a `{Self}`",
    note = "if the value is a list of `{E}`, `{Tk}.map(..)` runs `{Tk}` once per element"
)]
pub trait TaskInput<E, Tk> {
    /// Compiles only when `Self` is `E`.
    #[inline(always)]
    fn check(_offered: PhantomData<Self>) {}
}

#[diagnostic::do_not_recommend]
impl<T, Tk> TaskInput<T, Tk> for T {}

/// The value is of the parameter's type.
pub enum Exact {}

/// The value is a list of the parameter's type.
pub enum PerElement {}

/// The results of a mapped task offered to a parameter of type `E`: fits whole when `E`
/// is `Vec<Self>` (`Fit = Exact`); when `E` is `Self` (`Fit = PerElement`),
/// [`ReducedFits`] refuses it with the hint to map.
#[diagnostic::on_unimplemented(
    message = "task `{Tk}` expects `{E}` for this argument, but it is a mapped collection of `{Self}`",
    label = "one `{Self}` per child of a `.map(..)`",
    note = "a task takes all the results of a mapped task through a parameter of type `Vec<{Self}>`"
)]
pub trait MappedInput<E, Tk> {
    /// Whether the results fit whole, or only one by one.
    type Fit;

    /// Compiles when `E` is `Vec<Self>` or `Self`.
    #[inline(always)]
    fn check(_offered: PhantomData<Self>) -> PhantomData<Self::Fit> {
        PhantomData
    }
}

#[diagnostic::do_not_recommend]
impl<T, Tk> MappedInput<Vec<T>, Tk> for T {
    type Fit = Exact;
}

#[diagnostic::do_not_recommend]
impl<T, Tk> MappedInput<T, Tk> for T {
    type Fit = PerElement;
}

/// Refuses the results of a mapped task offered to a parameter of their element type,
/// with the hint to map.
#[diagnostic::on_unimplemented(
    message = "task `{Tk}` expects one `{E}` for this argument, but it is a mapped collection of them",
    label = "one `{E}` per child of a `.map(..)`: did you mean `{Tk}.map(..)`?",
    note = "to run `{Tk}` once per element, write `{Tk}.map(..)`",
    note = "to consume the whole collection at once, give the parameter type `Vec<{E}>`"
)]
pub trait ReducedFits<E, Tk> {
    /// Compiles only for [`Exact`].
    #[inline(always)]
    fn check(_fit: PhantomData<Self>) {}
}

#[diagnostic::do_not_recommend]
impl<E, Tk> ReducedFits<E, Tk> for Exact {}

/// An element offered to a mapped task's parameter of type `E`.
#[diagnostic::on_unimplemented(
    message = "`{Tk}.map(..)` expects elements of type `{E}`, but this collection yields `{Self}`",
    label = "yields `{Self}`, expected `{E}`",
    note = "this parameter of `{Tk}` has type `{E}`; each child receives one element of the collection"
)]
pub trait MapElement<E, Tk> {
    /// Compiles only when `Self` is `E`.
    #[inline(always)]
    fn check(_offered: PhantomData<Self>) {}
}

#[diagnostic::do_not_recommend]
impl<T, Tk> MapElement<T, Tk> for T {}

/// A value that a `.map(..)` can fan out over: a `Vec`, `VecDeque`, array, `BTreeSet`
/// or `HashSet` (concrete impls, so a non-collection gets this trait's message).
#[diagnostic::on_unimplemented(
    message = "`{Tk}.map(..)` needs a collection to fan out over, but this argument is a `{Self}`",
    label = "not a collection: `{Self}`",
    note = "`.map(..)` runs `{Tk}` once per element of a `Vec`, `VecDeque`, array, `BTreeSet` or `HashSet`",
    note = "to pass the same value to every child, wrap it: `unmapped(..)`"
)]
pub trait MapOver<Tk>: Sized {
    /// The element type.
    type Item;

    /// Splits a value holding `Self` into one value per element, in order.
    fn split(v: Value) -> Vec<Value>;

    /// The mapped argument: child `i` receives element `i`.
    #[inline(always)]
    fn fan_out(h: &Single<Self>) -> Arg<Self::Item> {
        builder::fan_out(h.source(), Self::split)
    }

    /// A constant collection mapped over.
    #[inline(always)]
    fn fan_out_const(v: Self, text: &'static str) -> Arg<Self::Item>
    where
        Self: Send + Sync + 'static,
    {
        builder::fan_out(Source::Const(value::value(v), text), Self::split)
    }
}

fn split_iter<C, T>(v: Value) -> Vec<Value>
where
    C: Clone + IntoIterator<Item = T> + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    match value::take::<C>(v) {
        Ok(c) => c.into_iter().map(value::value).collect(),
        Err(_) => Vec::new(),
    }
}

macro_rules! collection {
    ($($ty:ty => [$($bound:tt)*]),+ $(,)?) => {$(
        #[diagnostic::do_not_recommend]
        impl<T: Clone + Send + Sync + 'static $($bound)*, Tk> MapOver<Tk> for $ty {
            type Item = T;
            fn split(v: Value) -> Vec<Value> {
                split_iter::<$ty, T>(v)
            }
        }
    )+};
}

collection! {
    Vec<T> => [],
    VecDeque<T> => [],
    BTreeSet<T> => [+ Ord],
    HashSet<T> => [+ Eq + std::hash::Hash],
}

#[diagnostic::do_not_recommend]
impl<T: Clone + Send + Sync + 'static, const N: usize, Tk> MapOver<Tk> for [T; N] {
    type Item = T;
    fn split(v: Value) -> Vec<Value> {
        split_iter::<[T; N], T>(v)
    }
}

/// A task's signature seen through the number of arguments written in the flow.
///
/// `A0`..`A11` are the parameter types (`()` past the last one); `flow!` takes each
/// expected type from here, spanned at the task's name, so a wrong argument count is one
/// error there and nothing else.
#[diagnostic::on_unimplemented(
    message = "task `{Tk}` does not take {N} argument(s)",
    label = "`{Tk}` called with {N} argument(s)",
    note = "`{Tk}` has signature `{Self}`"
)]
pub trait Arity<const N: usize, Tk> {
    /// Parameter 0.
    type A0;
    /// Parameter 1.
    type A1;
    /// Parameter 2.
    type A2;
    /// Parameter 3.
    type A3;
    /// Parameter 4.
    type A4;
    /// Parameter 5.
    type A5;
    /// Parameter 6.
    type A6;
    /// Parameter 7.
    type A7;
    /// Parameter 8.
    type A8;
    /// Parameter 9.
    type A9;
    /// Parameter 10.
    type A10;
    /// Parameter 11.
    type A11;
}

macro_rules! arity {
    ($n:literal; $($a:ident),*; $($unit:ident),*) => {
        #[diagnostic::do_not_recommend]
        impl<Tk, R, $($a),*> Arity<$n, Tk> for fn($($a),*) -> R {
            $(type $a = $a;)*
            $(type $unit = ();)*
        }
    };
}

arity!(0; ; A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
arity!(1; A0; A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
arity!(2; A0, A1; A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
arity!(3; A0, A1, A2; A3, A4, A5, A6, A7, A8, A9, A10, A11);
arity!(4; A0, A1, A2, A3; A4, A5, A6, A7, A8, A9, A10, A11);
arity!(5; A0, A1, A2, A3, A4; A5, A6, A7, A8, A9, A10, A11);
arity!(6; A0, A1, A2, A3, A4, A5; A6, A7, A8, A9, A10, A11);
arity!(7; A0, A1, A2, A3, A4, A5, A6; A7, A8, A9, A10, A11);
arity!(8; A0, A1, A2, A3, A4, A5, A6, A7; A8, A9, A10, A11);
arity!(9; A0, A1, A2, A3, A4, A5, A6, A7, A8; A9, A10, A11);
arity!(10; A0, A1, A2, A3, A4, A5, A6, A7, A8, A9; A10, A11);
arity!(11; A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10; A11);
arity!(12; A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11;);

/// A flow's final value against its declared output type `O`.
#[diagnostic::on_unimplemented(
    message = "flow `{F}` declares output `{O}`, but its final step produces `{Self}`",
    label = "produces `{Self}`",
    note = "change the flow's return type to `{Self}`, or end the flow with a step that produces `{O}`"
)]
pub trait FlowOutput<O, F>: Sized {
    /// The output, typed as declared.
    fn output(arg: Arg<Self>) -> Arg<O>;
}

#[diagnostic::do_not_recommend]
impl<T, F> FlowOutput<T, F> for T {
    #[inline(always)]
    fn output(arg: Arg<T>) -> Arg<T> {
        arg
    }
}

/// The final value of a flow declared without an output type.
#[diagnostic::on_unimplemented(
    message = "flow `{F}` declares no output, but its final step produces `{Self}`",
    label = "produces `{Self}`",
    note = "add `-> {Self}` to the flow's signature to make it the output, or end the step with `;` to discard it"
)]
pub trait NoOutput<F>: Sized {
    /// The unit output.
    fn output(arg: Arg<Self>) -> Arg<()>;
}

#[diagnostic::do_not_recommend]
impl<F> NoOutput<F> for () {
    #[inline(always)]
    fn output(arg: Arg<()>) -> Arg<()> {
        arg
    }
}

/// A flow parameter's type: set from JSON per run, shared by the tasks that read it.
#[diagnostic::on_unimplemented(
    message = "flow `{F}` cannot take a parameter of type `{Self}`",
    label = "`{Self}` lacks `Serialize`/`Deserialize`, or is not `Clone + Send + Sync + 'static`",
    note = "parameters are set by name from JSON (`.with_param(..)`, the CLI): derive `serde::Serialize` and `serde::Deserialize`, and `Clone`"
)]
pub trait FlowParam<F>: Sized {
    /// Declares the parameter with its default.
    fn declare(b: &mut FlowBuilder, name: &'static str, ty: &'static str, default: Self) -> Single<Self>;
    /// Declares the parameter without a default: every run must set it.
    fn declare_required(b: &mut FlowBuilder, name: &'static str, ty: &'static str) -> Single<Self>;
}

#[diagnostic::do_not_recommend]
impl<T, F> FlowParam<F> for T
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    #[inline(always)]
    fn declare(b: &mut FlowBuilder, name: &'static str, ty: &'static str, default: T) -> Single<T> {
        b.param(name, ty, default)
    }

    #[inline(always)]
    fn declare_required(b: &mut FlowBuilder, name: &'static str, ty: &'static str) -> Single<T> {
        b.required_param(name, ty)
    }
}

/// Several values passed as one array argument: they must share one type.
#[diagnostic::on_unimplemented(
    message = "the elements of this array passed to `{Tk}` have different types: `{Self}`",
    label = "elements of different types",
    note = "an array gathers values of one type; pass a tuple `(a, b)` to a parameter of tuple type instead"
)]
pub trait Uniform<Tk>: Sized {
    /// `[T; N]`.
    type Array;
    /// The gathered tuple as an array.
    fn array(arg: Arg<Self>) -> Arg<Self::Array>;
}

macro_rules! uniform {
    ($n:literal; $($t:ident),+) => {
        #[diagnostic::do_not_recommend]
        impl<T: Clone + Send + Sync + 'static, Tk> Uniform<Tk> for ($($t,)+) {
            type Array = [T; $n];
            #[inline(always)]
            fn array(arg: Arg<Self>) -> Arg<[T; $n]> {
                builder::as_array::<T, $n, Self>(arg)
            }
        }
    };
}

uniform!(1; T);
uniform!(2; T, T);
uniform!(3; T, T, T);
uniform!(4; T, T, T, T);
uniform!(5; T, T, T, T, T);
uniform!(6; T, T, T, T, T, T);
uniform!(7; T, T, T, T, T, T, T);
uniform!(8; T, T, T, T, T, T, T, T);

/// What a task may return as its error.
#[diagnostic::on_unimplemented(
    message = "task `{Tk}` returns errors of type `{Self}`, which cannot become a `TaskError`",
    label = "error type `{Self}`",
    note = "return `Result<T, E>` where `E` implements `std::error::Error + Send + Sync + 'static`, or return `TaskError` (`TaskError::fail(..)`, `TaskError::skip(..)`)"
)]
pub trait IntoTaskError<Tk> {
    /// The conversion.
    fn into_task_error(self) -> crate::TaskError;
}

#[diagnostic::do_not_recommend]
impl<E: Into<crate::TaskError>, Tk> IntoTaskError<Tk> for E {
    #[inline(always)]
    fn into_task_error(self) -> crate::TaskError {
        self.into()
    }
}

/// A task input or output type that can cross a process boundary (to a cluster worker)
/// and be written to the result store (caching, persisted results).
#[diagnostic::on_unimplemented(
    message = "task `{Tk}` needs serde for `{Self}`: task inputs and outputs are sent to cluster workers and written to the result store",
    label = "`{Self}` lacks `Serialize`/`Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`",
    note = "or, for a task that is neither cached nor persisted, mark it `#[task(local)]` to keep it on the local executor (a cluster executor then refuses it)"
)]
pub trait Portable<Tk> {
    /// Writes a value of this type as JSON.
    const ENCODE: crate::task::EncodeFn;
    /// Reads a value of this type from JSON.
    const DECODE: crate::task::DecodeFn;
    /// Writes a value of this type in the wire format.
    const PACK: crate::task::EncodeFn;
    /// Reads a value of this type from the wire format.
    const UNPACK: crate::task::DecodeFn;
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static, Tk> Portable<Tk> for T {
    const ENCODE: crate::task::EncodeFn = value::encode_json::<T>;
    const DECODE: crate::task::DecodeFn = value::decode_json::<T>;
    const PACK: crate::task::EncodeFn = value::pack::<T>;
    const UNPACK: crate::task::DecodeFn = value::unpack::<T>;
}

/// The inputs and outputs of tasks, as the subject of [`Shareable`].
pub enum TaskIo {}

/// A task input or output type `T` the engine can hold and share.
///
/// The checked type is a parameter rather than `Self`: rustc would otherwise suggest
/// borrowing it (`&T` is `Clone`), which never helps here.
#[diagnostic::on_unimplemented(
    message = "task `{Tk}` cannot pass `{T}` between tasks: task inputs and outputs must be `Clone + Send + Sync + 'static`",
    label = "`{T}` is not `Clone + Send + Sync + 'static`",
    note = "results are shared between downstream tasks and threads; derive `Clone`, and use `Arc` rather than `Rc` or references"
)]
pub trait Shareable<T, Tk> {
    /// How to store a task's result.
    fn store() -> fn(T) -> Value;

    /// How to take a task's input: moved when this is the last holder, cloned otherwise.
    fn taker() -> fn(Value) -> Result<T, crate::TaskError>;
}

#[diagnostic::do_not_recommend]
impl<T: Clone + Send + Sync + 'static, Tk> Shareable<T, Tk> for TaskIo {
    #[inline(always)]
    fn store() -> fn(T) -> Value {
        value::value::<T>
    }

    #[inline(always)]
    fn taker() -> fn(Value) -> Result<T, crate::TaskError> {
        value::take::<T>
    }
}

/// The condition of an `if` in flow `F`: a flow branches on a `bool`.
#[diagnostic::on_unimplemented(
    message = "the condition of an `if` in flow `{F}` must be a `bool`, but it is a `{Self}`",
    label = "expected `bool`, found `{Self}`",
    note = "a flow branches on a task's `bool` result or a `bool` parameter; compute the decision in a task that returns `bool`"
)]
pub trait IfCondition<F> {
    /// Compiles only for `bool`.
    #[inline(always)]
    fn check(_offered: PhantomData<Self>) {}
}

#[diagnostic::do_not_recommend]
impl<F> IfCondition<F> for bool {}

/// The value of a later branch of an `if` in flow `F`, against the first branch's type
/// `T`: every branch gives a value of one type.
#[diagnostic::on_unimplemented(
    message = "the branches of this `if` in flow `{F}` give different types: `{T}` and `{Self}`",
    label = "this branch gives `{Self}`, the first branch gives `{T}`",
    note = "an `if` gives the value of the branch that ran, so every branch must give the same type"
)]
pub trait BranchValue<T, F>: Sized {
    /// The branch's value, typed as the first branch's.
    fn value(first: PhantomData<T>, arg: Arg<Self>) -> Arg<T>;
}

#[diagnostic::do_not_recommend]
impl<T, F> BranchValue<T, F> for T {
    #[inline(always)]
    fn value(_first: PhantomData<T>, arg: Arg<T>) -> Arg<T> {
        arg
    }
}
