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

/// The Python of `tests/<name>/.venv`, with `tests/<name>/requirements.txt`
/// installed the first time a test needs it (one test at a time), or `None`
/// (with a note) when that fails outside CI; under `CI=true` it fails the
/// test.
pub fn python_project(name: &str) -> Option<PathBuf> {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests")).join(name);
    let venv = dir.join(".venv");
    let py = venv.join("bin/python");
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    if !py.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(dir.join("requirements.txt"))
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir_all(&venv);
            assert!(
                !in_ci(),
                "CI=true but tests/{name}/requirements.txt could not be installed"
            );
            eprintln!("note: could not install tests/{name}/requirements.txt; skipping");
            return None;
        }
    }
    Some(py)
}
