//! Compile-time wiring checks: every case in `ui-tests/fail` must fail to compile with
//! exactly the error in its `.stderr`; every case in `ui-tests/pass` must compile.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui-tests/pass/*.rs");
    t.compile_fail("ui-tests/fail/*.rs");
}
