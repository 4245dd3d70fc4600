//! The Node.js tools of the suites (`tests/browser`, `tests/typescript`,
//! `tests/openapi`): each folder has its own `package.json` and lock file,
//! installed with `npm ci` the first time a test needs it.

use std::{path::PathBuf, process::Command};

use super::in_ci;

/// The folder `tests/<name>` with its packages installed, or `None` (with a
/// note) when Node.js or npm is missing outside CI; under `CI=true` a
/// missing tool fails the test.
pub fn node_project(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests")).join(name);
    let has = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has("node") || !has("npm") {
        assert!(!in_ci(), "CI=true but node or npm is missing");
        eprintln!("note: node and npm not found; skipping");
        return None;
    }
    if !dir.join("node_modules").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .status()
            .expect("running npm ci");
        assert!(status.success(), "npm ci in {}", dir.display());
    }
    Some(dir)
}
