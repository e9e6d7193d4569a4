//! How Rust runs the Node.js package in this directory (the interop test
//! and `make bench`'s `baileys` section include this file with `#[path]`):
//! `npm ci` when the installed packages are missing or older than the lock
//! file, and a message naming what to install when node or npm is missing.

use std::path::Path;
use std::process::{Command, Output};

/// What to install when `node` or `npm` cannot be started.
pub const INSTALL_NODE: &str =
    "install Node.js 20 or later and npm (Debian: apt-get install nodejs npm)";

/// Runs `cmd` to its end, or panics saying what to install.
pub fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}; {INSTALL_NODE}"))
}

pub fn text(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `npm ci` in `dir` unless the installed tree is at least as new as the
/// lock file.
pub fn install_packages(dir: &Path) {
    let modified = |p: &str| {
        std::fs::metadata(dir.join(p))
            .and_then(|m| m.modified())
            .ok()
    };
    let installed = modified("node_modules/.package-lock.json");
    if installed.is_some() && installed >= modified("package-lock.json") {
        return;
    }
    let out = run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir),
        "npm ci",
    );
    assert!(
        out.status.success(),
        "npm ci in {} failed ({}):\n{}",
        dir.display(),
        out.status,
        text(&out)
    );
}
