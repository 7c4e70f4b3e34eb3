//! Compile-time wiring checks: every case in `ui-tests/fail` must fail to compile with
//! exactly the error in its `.stderr`; every case in `ui-tests/pass` must compile.

/// The `.stderr` snapshots hold rustc's exact output, whose wording, notes and path
/// printing change between compiler versions, so they are written for one version:
/// rustc 1.95, the toolchain the project is checked with. On any other compiler (an older
/// or newer stable, a beta, a nightly) the test is ignored, with a reason that says so,
/// instead of failing over wording. To move to a new version, regenerate the snapshots
/// with `TRYBUILD=overwrite`, review every changed `.stderr`, and change the version
/// here. serde and thiserror gate their ui tests the same way, with `rustversion`.
#[rustversion::attr(
    not(stable(1.95)),
    ignore = "the .stderr files of ui-tests/ were written for rustc 1.95; other versions word errors differently"
)]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui-tests/pass/*.rs");
    t.compile_fail("ui-tests/fail/*.rs");
}
