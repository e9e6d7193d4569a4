//! Baileys 7 (Node.js), an independent client, against the mock-wa binary:
//! runs the suite in `interop/` with node's test runner and fails with its
//! output. `npm ci` installs the locked packages first when `node_modules`
//! is missing or older than `package-lock.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e}; install Node.js 20 or later and npm (Debian: apt-get install nodejs npm)")
    })
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `npm ci` unless the installed tree is at least as new as the lock file.
fn install_packages(dir: &Path) {
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(dir.join("node_modules/.package-lock.json"));
    let locked = modified(dir.join("package-lock.json"));
    if installed.is_some() && installed >= locked {
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

#[test]
fn baileys_pairs_logs_in_messages_and_reconnects_against_mock_wa() {
    let dir = interop_dir();
    install_packages(&dir);
    let out = run(
        Command::new("node")
            .args([
                "--test",
                "--test-force-exit",
                "--test-concurrency=1",
                "--test-reporter=spec",
                "test/",
            ])
            .env("MOCK_WA_BIN", env!("CARGO_BIN_EXE_mock-wa"))
            .current_dir(&dir),
        "node --test",
    );
    let report = text(&out);
    assert!(
        out.status.success(),
        "the Baileys suite failed ({}):\n{report}",
        out.status
    );
    assert!(
        report.contains("# fail 0") || report.contains("ℹ fail 0"),
        "the Baileys suite ran no test or reported failures:\n{report}"
    );
}
