//! The user's names can't capture what `#[task]` and `flow!` generate: every generated
//! path is absolute and every generated trait call fully qualified.
#![allow(dead_code, non_camel_case_types, unused_macros)]

use std::fmt;

#[derive(Debug)]
pub struct MyError;

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("my error")
    }
}

impl std::error::Error for MyError {}

/// Method names the generated code calls through traits or on its own types, on every
/// type. (`user-methods-do-not-capture-generated-calls.rs` covers the builder's `&mut self`
/// methods and `Iterator::next`.)
pub trait Everything {
    fn check(&self) {}
    fn payload(&self) {}
    fn into_input(&self) {}
    fn into_task_error(&self) {}
    fn fan_out(&self) {}
    fn fan_out_const(&self) {}
    fn split(&self) {}
}

impl<T: ?Sized> Everything for T {}

mod shadowed {
    // `tideflow` itself is shadowed below: reach the crate by its absolute path.
    use ::tideflow::prelude::*;

    #[allow(unused_imports)]
    use super::Everything;

    // Names the generated code uses, defined by the user.
    pub struct PhantomData;
    pub struct Box;
    pub struct Vec;
    pub struct Duration;
    pub struct TaskDef;
    pub struct TaskOptions;
    pub struct TaskBody;
    pub struct Value;
    pub struct Flow;
    pub enum Option {}
    pub trait Task {}
    pub trait Arity {}
    pub trait TaskInput {}
    pub trait IfCondition {}
    pub trait BranchValue {}
    pub struct bool;
    pub struct FlowBuilder;
    pub mod core {}
    pub mod std {}
    pub mod tideflow {}
    pub mod inventory {}
    pub fn value() {}
    pub fn take() {}
    pub fn borrow() {}
    pub fn whole() {}
    pub fn constant() {}
    pub fn reduce() {}
    pub fn zip() {}
    pub fn gate() {}
    pub fn merge() {}
    macro_rules! vec {
        ($($t:tt)*) => {
            compile_error!("the user's vec! was used")
        };
    }
    macro_rules! concat {
        ($($t:tt)*) => {
            compile_error!("the user's concat! was used")
        };
    }
    macro_rules! module_path {
        () => {
            compile_error!("the user's module_path! was used")
        };
    }
    macro_rules! unreachable {
        ($($t:tt)*) => {
            compile_error!("the user's unreachable! was used")
        };
    }

    /// A crate-style `Result` alias with one parameter.
    pub type Result<T> = ::std::result::Result<T, super::MyError>;

    #[task]
    pub fn numbers(n: u64) -> Result<::std::vec::Vec<u64>> {
        Ok((0..n).collect())
    }

    #[task(max_retries = 1, retry_delay = "1s")]
    pub fn double(x: &u64, ctx: &TaskContext) -> u64 {
        let _ = ctx;
        x * 2
    }

    #[task]
    pub async fn total(xs: ::std::vec::Vec<u64>, label: ::std::string::String) -> Result<u64> {
        let _ = label;
        Ok(xs.iter().sum())
    }

    #[task]
    pub fn pair(p: (u64, u64)) -> u64 {
        p.0 + p.1
    }

    flow! {
        /// Uses every kind of argument.
        pub fn hygienic(n: u64 = 3) -> u64 {
            let xs = numbers(n);
            let doubled = double.map(xs);
            let more = double.map(doubled);
            let scaled = double.map([1, 2]);
            let t = total(doubled, "label".to_owned());
            let p = pair((t, n)).after(more);
            p
        }
    }

    const VERBOSE: ::core::primitive::bool = false;

    #[task]
    pub fn is_even(n: u64) -> ::core::primitive::bool {
        n % 2 == 0
    }

    flow! {
        /// Every form of `if`.
        pub fn branching(n: u64 = 3, flag: ::core::primitive::bool = true) -> u64 {
            if VERBOSE {
                pair((n, n));
            }
            let y = if is_even(n) { pair((n, n)) } else if !flag { n } else { 7 };
            if flag { y } else { pair((y, 1)) }
        }
    }
}

fn main() {
    let _ = shadowed::hygienic();
    let _ = shadowed::branching();
}
