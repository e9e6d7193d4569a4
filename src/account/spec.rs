//! What an account is given: its configuration, and the settings every
//! supervisor shares. The handle and the supervisor task both read these.

use std::time::Duration;

use crate::store::Retention;
use crate::wa::ConnectionSettings;

/// Settings every supervisor shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub connection: ConnectionSettings,
    pub backoff_steps: Vec<Duration>,
    pub jitter: f64,
    /// Every account's connection attempts pass through this one gate.
    pub handshakes: super::HandshakeGate,
}

/// An account as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    pub name: String,
    pub enabled: bool,
    pub pair_on_start: bool,
    /// How much message history to keep.
    pub retention: Retention,
    /// The proxy this account dials through (its own or the daemon's).
    pub proxy: Option<crate::net::Proxy>,
    /// Where received files go and which are fetched as they arrive.
    pub media: crate::messages::media::MediaSettings,
    /// A message deleted for everyone keeps its text in the history.
    pub keep_revoked_text: bool,
}
