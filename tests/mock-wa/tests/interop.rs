//! Baileys 7 (Node.js), an independent client, against the mock-wa binary:
//! runs the suite in `interop/` with node's test runner and fails with its
//! output. `npm ci` installs the locked packages first when `node_modules`
//! is missing or older than `package-lock.json`.

#[path = "../interop/node.rs"]
mod node;

use std::path::{Path, PathBuf};
use std::process::Command;

use node::{install_packages, run, text};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
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
