//! What several test binaries share.

use std::path::PathBuf;

/// The Python to run the bridge with, or `None` (after saying so) when there is none.
pub fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TIDEFLOW_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dask-venv/bin/python")),
    ];
    for p in candidates.into_iter().flatten() {
        let ok = std::process::Command::new(&p)
            .args(["-c", "import distributed"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    let message = "NOT RUN: the Dask tests need Python with Dask's client; run `.ci/dask-venv` (or set \
                   TIDEFLOW_PYTHON) and run them again";
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("\n*** {message} ***\n");
    None
}
