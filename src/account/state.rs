//! Account states and the rule that turns "how did the last connection end"
//! into "what do we do next". Pure, so every branch of DESIGN.md's disconnect
//! table is unit-tested without a network.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The life of one account, as `walink status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    Stopped,
    Connecting,
    WaitingForPairing,
    Connected,
    Reconnecting,
    LoggedOut,
    Replaced,
    Failed,
}

impl AccountState {
    /// Every state, in declaration order: for exporters that list them all.
    pub const ALL: [AccountState; 8] = [
        Self::Stopped,
        Self::Connecting,
        Self::WaitingForPairing,
        Self::Connected,
        Self::Reconnecting,
        Self::LoggedOut,
        Self::Replaced,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Connecting => "connecting",
            Self::WaitingForPairing => "waiting_for_pairing",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::LoggedOut => "logged_out",
            Self::Replaced => "replaced",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for AccountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one connection attempt showed, gathered from library events while it
/// ran. An attempt is one `Client::run` pass: connect, serve, tear down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempt {
    /// The server accepted the login (`Connected` event).
    pub connected: bool,
    /// The phone scanned the QR during this attempt (`PairSuccess`).
    pub paired: bool,
    /// Code of the last `<stream:error>` the server sent, if any.
    pub stream_error: Option<u16>,
    /// The server logged the device out (401, 516, device_removed, failure 401).
    pub logged_out: bool,
    /// Another client took over the session (440 / conflict replaced / 409).
    pub replaced: bool,
    /// The transport said why it ended: `Some(true)` for a routine recycle
    /// (clean close frame or EOF), `Some(false)` for an error.
    pub clean_close: Option<bool>,
    /// The server stopped answering (a keepalive went unanswered) and walink
    /// dropped the connection.
    pub silent: bool,
    /// The server handed out every QR ref and nobody scanned.
    pub qr_exhausted: bool,
    /// A temporary ban with its duration.
    pub banned_for: Option<Duration>,
    /// Why the connection could not be opened, when it could not.
    pub dial_error: Option<String>,
}

/// The supervisor's next move after an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Reconnect with no delay (routine recycle, 515, just paired).
    Immediately { reason: String },
    /// Wait the next backoff step, then retry.
    Backoff { reason: String },
    /// The server asked us to slow down: jump to the top of the schedule.
    SlowDown { reason: String },
    /// Wait exactly this long (temporary ban), then retry.
    WaitFor { delay: Duration, reason: String },
    /// Terminal until an operator acts.
    Stop { state: AccountState, reason: String },
}

/// Decides what follows an attempt. Order matters: a logout or replacement
/// wins over anything else the attempt showed, because retrying then would
/// fight WhatsApp (DESIGN.md: 401/440 stop it).
pub fn next_after(attempt: &Attempt) -> Next {
    if attempt.logged_out || attempt.stream_error == Some(401) {
        return Next::Stop {
            state: AccountState::LoggedOut,
            reason: "logged out by the server (401): credentials removed".into(),
        };
    }
    if attempt.replaced || attempt.stream_error == Some(440) {
        return Next::Stop {
            state: AccountState::Replaced,
            reason: "another client took over the session (440)".into(),
        };
    }
    if attempt.qr_exhausted {
        return Next::Stop {
            state: AccountState::Stopped,
            reason: "QR codes expired without a scan".into(),
        };
    }
    if let Some(delay) = attempt.banned_for {
        return Next::WaitFor {
            delay,
            reason: "temporarily banned by the server".into(),
        };
    }
    match attempt.stream_error {
        Some(515) => {
            return Next::Immediately {
                reason: "server asked for a restart (515)".into(),
            };
        }
        Some(429) => {
            return Next::SlowDown {
                reason: "rate limited by the server (429)".into(),
            };
        }
        Some(code) if code >= 500 => {
            return Next::Backoff {
                reason: format!("server error ({code})"),
            };
        }
        _ => {}
    }
    if attempt.paired {
        return Next::Immediately {
            reason: "paired: logging in with the new identity".into(),
        };
    }
    match (attempt.connected, attempt.clean_close) {
        // The network path died, not the server's will: a new connection
        // usually works at once, and a failing one backs off as usual.
        (true, _) if attempt.silent => Next::Immediately {
            reason: "the server stopped answering keepalives".into(),
        },
        (true, Some(true)) => Next::Immediately {
            reason: "server recycled the connection".into(),
        },
        (true, _) => Next::Backoff {
            reason: "connection lost".into(),
        },
        (false, _) => Next::Backoff {
            reason: match &attempt.dial_error {
                Some(e) => format!("could not connect: {e}"),
                None => "could not connect".into(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected() -> Attempt {
        Attempt {
            connected: true,
            ..Attempt::default()
        }
    }

    #[test]
    fn routine_recycle_reconnects_at_once() {
        let a = Attempt {
            clean_close: Some(true),
            ..connected()
        };
        assert!(matches!(next_after(&a), Next::Immediately { .. }));
    }

    #[test]
    fn restart_required_reconnects_at_once() {
        let a = Attempt {
            stream_error: Some(515),
            ..connected()
        };
        assert!(matches!(next_after(&a), Next::Immediately { .. }));
    }

    #[test]
    fn a_silent_server_is_left_at_once_but_a_failed_dial_backs_off() {
        let a = Attempt {
            silent: true,
            clean_close: Some(false),
            ..connected()
        };
        assert!(matches!(next_after(&a), Next::Immediately { .. }));
        let dial = Attempt {
            silent: true,
            ..Attempt::default()
        };
        assert!(matches!(next_after(&dial), Next::Backoff { .. }));
    }

    #[test]
    fn pairing_reconnects_at_once_even_without_login() {
        let a = Attempt {
            paired: true,
            ..Attempt::default()
        };
        assert!(matches!(next_after(&a), Next::Immediately { .. }));
    }

    #[test]
    fn errors_back_off() {
        for a in [
            Attempt::default(),
            Attempt {
                clean_close: Some(false),
                ..connected()
            },
            Attempt {
                stream_error: Some(503),
                clean_close: Some(true),
                ..connected()
            },
        ] {
            assert!(matches!(next_after(&a), Next::Backoff { .. }), "{a:?}");
        }
    }

    #[test]
    fn rate_limit_slows_down() {
        let a = Attempt {
            stream_error: Some(429),
            ..connected()
        };
        assert!(matches!(next_after(&a), Next::SlowDown { .. }));
    }

    #[test]
    fn logout_and_replacement_stop_for_good() {
        let out = Attempt {
            logged_out: true,
            clean_close: Some(true),
            ..connected()
        };
        assert!(matches!(
            next_after(&out),
            Next::Stop {
                state: AccountState::LoggedOut,
                ..
            }
        ));
        let replaced = Attempt {
            stream_error: Some(440),
            ..connected()
        };
        assert!(matches!(
            next_after(&replaced),
            Next::Stop {
                state: AccountState::Replaced,
                ..
            }
        ));
    }

    #[test]
    fn unscanned_qr_stops_and_ban_waits() {
        let qr = Attempt {
            qr_exhausted: true,
            ..Attempt::default()
        };
        assert!(matches!(
            next_after(&qr),
            Next::Stop {
                state: AccountState::Stopped,
                ..
            }
        ));
        let ban = Attempt {
            banned_for: Some(Duration::from_secs(3600)),
            ..connected()
        };
        assert_eq!(
            next_after(&ban),
            Next::WaitFor {
                delay: Duration::from_secs(3600),
                reason: "temporarily banned by the server".into()
            }
        );
    }
}
