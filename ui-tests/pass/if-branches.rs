use tideflow::prelude::*;

#[task]
fn is_even(n: u64) -> bool {
    n % 2 == 0
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn half(x: u64) -> u64 {
    x / 2
}

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[task]
fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
fn notify(x: u64) {
    let _ = x;
}

const VERBOSE: bool = false;

flow! {
    /// Every form of `if` a flow accepts.
    pub fn branches(n: u64 = 4, flag: bool = true) -> u64 {
        // Statement form, with and without `else`, with and without a trailing `;`.
        if flag {
            notify(n);
        }
        if flag { notify(n); } else { notify(1); };
        // A task call as the condition, negated; a final call without `;` in a statement.
        if !is_even(n) {
            double(n)
        } else {
            let h = half(n);
            notify(h)
        }
        // A constant condition.
        if VERBOSE {
            notify(n);
        }
        // Value form: bindings inside a branch are its own; a branch may give a parameter.
        let even = is_even(n);
        let y = if even {
            let d = double(n);
            half(d)
        } else if flag {
            n
        } else {
            double(1)
        };
        // Nested `if`s, a `.map(..)` in a branch.
        let z = if flag {
            let xs = numbers(y);
            let ds = double.map(xs);
            let t = total(ds);
            if even { t } else { half(t) }
        } else {
            y
        };
        // Constants as branch values.
        let w = if flag { double(z) } else { 0 };
        let v = if flag { 1 } else { 2 };
        notify(v);
        let e = if flag { Vec::new() } else { numbers(w) };
        let sum = total(e);
        // The final `if` is the flow's output.
        if even { z } else { double(z) }
    }
}

flow! {
    /// A flow without an output may end with an `if` statement.
    pub fn ends_with_if(flag: bool = true) {
        if flag {
            notify(1);
        } else {
            notify(2);
        }
    }
}

fn main() {
    let _ = branches();
    let _ = ends_with_if();
}
