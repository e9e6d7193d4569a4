//! Where logs go: journald with structured fields under systemd, readable
//! lines on stderr otherwise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::config::LogTarget;

/// Installs the global subscriber. `RUST_LOG` overrides the default level
/// (info for walink, warn for the libraries, whose info lines are noise for
/// an operator).
pub fn init(target: LogTarget) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,walink=info,walinkd=info"));
    let journald = match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    if journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                // Fields become journal fields (ACCOUNT=, EVENT=, …) so
                // `journalctl -u walink ACCOUNT=sales` works.
                let _ = registry
                    .with(
                        layer
                            .with_syslog_identifier("walinkd".into())
                            .with_field_prefix(None),
                    )
                    .try_init();
                return;
            }
            Err(e) => eprintln!("walinkd: journald unavailable ({e}); logging to stderr"),
        }
    }
    let _ = registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        )
        .try_init();
}
