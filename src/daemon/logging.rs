//! Where logs go: journald with structured fields under systemd, readable
//! lines on stderr otherwise.

use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::prelude::*;

use crate::config::LogTarget;

/// Where the library logs why a connect failed ("Failed to connect: …" at
/// ERROR, "Transient connect failure, will retry: …" at DEBUG): read at
/// debug level whatever `RUST_LOG` says, for the attempt's reason only.
const CONNECT_LOG_TARGET: &str = "whatsapp_rust::client::lifecycle";

/// Installs the global subscriber. `RUST_LOG` overrides the default level
/// (info for walink, warn for the libraries, whose info lines are noise for
/// an operator).
pub fn init(target: LogTarget) {
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("warn,walink=info,walinkd=info"))
    };
    let journald = match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    let registry = tracing_subscriber::registry().with(ConnectErrors.with_filter(
        tracing_subscriber::filter::Targets::new().with_target(CONNECT_LOG_TARGET, Level::DEBUG),
    ));
    if journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                // Fields become journal fields (ACCOUNT=, EVENT=, …) so
                // `journalctl -u walink ACCOUNT=sales` works.
                let _ = registry
                    .with(
                        layer
                            .with_syslog_identifier("walinkd".into())
                            .with_field_prefix(None)
                            .with_filter(filter().and(Guard)),
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
                .with_target(false)
                .with_filter(filter().and(Guard)),
        )
        .try_init();
}

/// Hands the library's connect failures to the account's attempt as its
/// reason (the library reports it nowhere else). Its filter lets through
/// that one target at debug level whatever `RUST_LOG` says; it prints
/// nothing.
struct ConnectErrors;

impl<S: Subscriber> Layer<S> for ConnectErrors {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut seen = Seen::default();
        event.record(&mut seen);
        if let Some(why) = connect_failure(*event.metadata().level(), &seen.message) {
            crate::wa::session::note_connect_error(why);
        }
    }
}

/// Filters out the library's log lines that must not reach walink's log:
///
/// - anything that can carry pairing material: the phone-number flow logs
///   the pair code itself (target `Client/PairCode`), and at debug level the
///   node dumps (`Client/Recv`, `Client/Send`) print the refs of
///   `pair-device`, from which the QR is made;
/// - "Failed to connect: … Will retry..." at ERROR: walink, not the library,
///   retries, and logs the attempt's reason itself (`event=backoff`); the
///   error is handed to the account's attempt as its reason.
///
/// walink's own events are never inspected. It is the second half of each
/// output's filter, so it reads (and formats) only the lines the first half,
/// `RUST_LOG`, lets through. As a layer of its own, with no level of its
/// own, it made every line of every level an enabled event and formatted
/// each into a string to inspect it: with the libraries' debug and trace
/// lines, a dump of every node sent and received.
pub struct Guard;

impl<S: Subscriber> Filter<S> for Guard {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        if event.metadata().target().starts_with("walink") {
            return true;
        }
        let mut seen = Seen::default();
        event.record(&mut seen);
        let target = seen
            .log_target
            .as_deref()
            .unwrap_or(event.metadata().target());
        !withheld(target, *event.metadata().level(), &seen.message)
    }

    /// Every level: the level is the other half's to limit (`And` keeps
    /// the lower of the two hints, and no hint would mean none at all).
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}

/// Whether a library line with this target, level and message is withheld.
pub fn withheld(target: &str, level: Level, message: &str) -> bool {
    const PAIRING: [&str; 3] = ["pair-device", "pair-success", "link_code_companion_reg"];
    match target {
        "Client/PairCode" => true,
        "Client/Recv" | "Client/Send" => PAIRING.iter().any(|m| message.contains(m)),
        _ => {
            (level == Level::ERROR && connect_failure(level, message).is_some())
                || message.contains("pair-device")
        }
    }
}

/// The error in the library's connect failure lines.
fn connect_failure(level: Level, message: &str) -> Option<&str> {
    match level {
        Level::ERROR => {
            let why = message.strip_prefix("Failed to connect: ")?;
            Some(why.strip_suffix(". Will retry...").unwrap_or(why))
        }
        Level::DEBUG => message.strip_prefix("Transient connect failure, will retry: "),
        _ => None,
    }
}

#[derive(Default)]
struct Seen {
    message: String,
    /// The `log` crate's target, for lines that came through tracing-log.
    log_target: Option<String>,
}

impl Visit for Seen {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "log.target" => self.log_target = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "log.target" => self.log_target = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_material_and_the_retry_error_are_withheld() {
        assert!(withheld(
            "Client/Recv",
            Level::DEBUG,
            "<iq type=\"set\"><pair-device><ref>2@abc</ref></pair-device></iq>"
        ));
        assert!(withheld(
            "Client/PairCode",
            Level::INFO,
            "Stage 1 complete, waiting for phone confirmation. Code: ABCD-EFGH"
        ));
        assert!(withheld(
            "whatsapp_rust::client::lifecycle",
            Level::ERROR,
            "Failed to connect: transport failed. Will retry..."
        ));
        assert_eq!(
            connect_failure(
                Level::ERROR,
                "Failed to connect: handshake: bad hello. Will retry..."
            ),
            Some("handshake: bad hello")
        );
        assert_eq!(
            connect_failure(
                Level::DEBUG,
                "Transient connect failure, will retry: closed"
            ),
            Some("closed")
        );
        assert_eq!(connect_failure(Level::WARN, "Failed to connect: x"), None);
        assert!(!withheld(
            "whatsapp_rust::client::lifecycle",
            Level::DEBUG,
            "Transient connect failure, will retry: x"
        ));
        assert!(!withheld(
            "Client/Recv",
            Level::DEBUG,
            "<ib><offline count=\"0\"/></ib>"
        ));
        assert!(!withheld(
            "whatsapp_rust::client",
            Level::WARN,
            "Failed to send acknowledgement"
        ));
    }
}
