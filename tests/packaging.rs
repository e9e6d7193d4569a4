//! What the packages ship besides the binaries: shell completions generated
//! by `walink completions`, and man pages that keep up with the code.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use walink::cli::Cli;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// roff escapes `-` as `\-`; undo it so names can be searched for.
fn man_text(path: &str) -> String {
    read(path).replace("\\-", "-")
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish_without_a_daemon() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_walink"))
            // A socket nobody listens on: completions must not need one.
            .args(["--socket", "/nonexistent/walink.sock", "completions", shell])
            .output()
            .expect("run walink completions");
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).expect("UTF-8");
        for word in ["walink", "pair-code", "clear-session", "json"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_walink"))
        .args(["completions", "tcsh"])
        .output()
        .expect("run walink completions");
    assert_eq!(
        out.status.code(),
        Some(64),
        "an unknown shell is a usage error"
    );
}

#[test]
fn walink_1_documents_every_command_and_option() {
    let page = man_text("man/walink.1");
    let cli = Cli::command();
    for arg in cli.get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(
                page.contains(&format!("--{long}")),
                "walink.1 lacks --{long}"
            );
        }
    }
    for command in cli.get_subcommands() {
        let name = command.get_name();
        assert!(
            page.contains(&format!(".BR {name} ")) || page.contains(&format!(".BI \"{name} ")),
            "walink.1 has no entry for `walink {name}`"
        );
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    page.contains(&format!("--{long}")),
                    "walink.1 lacks `walink {name} --{long}`"
                );
            }
        }
    }
    for code in [
        walink::cli::exit::DEGRADED,
        walink::cli::exit::CRITICAL,
        walink::cli::exit::REFUSED,
        walink::cli::exit::UNREACHABLE,
        walink::cli::exit::USAGE,
    ] {
        assert!(
            page.contains(&format!(".TP\n.B {code}\n")),
            "walink.1 does not explain exit status {code}"
        );
    }
}

#[test]
fn walink_toml_5_documents_every_key_of_the_shipped_config() {
    let page = man_text("man/walink.toml.5");
    let shipped = read("etc/walink.toml");
    let mut keys = 0;
    for line in shipped.lines() {
        let line = line.trim_start_matches('#');
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        keys += 1;
        assert!(
            page.contains(&format!(".BR {key} ")),
            "walink.toml.5 lacks the key {key}"
        );
    }
    assert!(keys >= 12, "found only {keys} keys in etc/walink.toml");
    for table in ["[daemon]", "[connection]", "[[account]]"] {
        assert!(page.contains(&format!(".SH {table}")), "no section {table}");
    }
}

#[test]
fn walinkd_8_documents_signals_and_environment() {
    let page = man_text("man/walinkd.8");
    for word in [
        "--config",
        "--user",
        "SIGTERM",
        "SIGINT",
        "SIGHUP",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "LISTEN_FDS",
        "LISTEN_PID",
        "JOURNAL_STREAM",
        "RUST_LOG",
        ".SH EXIT STATUS",
        ".SH FILES",
    ] {
        assert!(page.contains(word), "walinkd.8 lacks {word}");
    }
}
