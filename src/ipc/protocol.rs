//! The JSON-RPC 2.0 protocol spoken on walinkd's socket, shared by the daemon
//! and every client. One JSON object per line in each direction.
//!
//! Field names here are a public interface (`walink --json`, scripts using
//! `socat` + `jq`): add fields, never rename or remove them. Optional values
//! are always present, as `null` when unknown, so consumers can rely on keys.
//! Times are whole seconds since the Unix epoch (UTC), in fields ending in
//! `_at` or `_since`, plus `at` on events.

use std::time::{SystemTime, UNIX_EPOCH};

/// Shared with the account layer, which owns their meaning.
pub use crate::account::health::{HealthLevel, Recommendations};
pub use crate::account::state::AccountState;
/// `diagnose` result types, owned by the probe that fills them.
pub use crate::wa::diagnose::{DiagnoseReport, DiagnoseStep, StepStatus};

pub const JSONRPC_VERSION: &str = "2.0";

/// The longest request line the server reads, in bytes (newline excluded).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

mod accounts;
mod backup;
mod call;
mod error;
mod events;
mod files;
mod framing;
mod media;
mod messages;
mod people;
mod recipients;
mod sends;
pub use accounts::*;
pub use backup::*;
pub use call::*;
pub use error::*;
pub use events::*;
pub use files::*;
pub use framing::*;
pub use media::*;
pub use messages::*;
pub use people::*;
pub use recipients::*;
pub use sends::*;

/// Method names.
pub mod method {
    pub const STATUS: &str = "status";
    pub const HEALTH: &str = "health";
    pub const INITIALIZE: &str = "initialize";
    pub const RECONNECT: &str = "reconnect";
    pub const CLEAR_SESSION: &str = "clear_session";
    pub const RESTART: &str = "restart";
    pub const SEND: &str = "send";
    pub const QR: &str = "qr";
    /// During a `qr` call, while no QR can be shown because the account
    /// cannot reach the server: params: [`super::QrWaiting`].
    pub const QR_WAITING: &str = "qr.waiting";
    pub const PAIR_CODE: &str = "pair_code";
    pub const SUBSCRIBE: &str = "subscribe";
    pub const DIAGNOSE: &str = "diagnose";
    pub const OUTBOX: &str = "outbox";
    pub const MESSAGES: &str = "messages";
    pub const CHATS: &str = "chats";
    pub const CONTACTS: &str = "contacts";
    pub const GROUPS: &str = "groups";
    pub const REACT: &str = "react";
    pub const MEDIA: &str = "media";
    pub const MEDIA_PART: &str = "media_part";
    pub const EDIT: &str = "edit";
    pub const DELETE: &str = "delete";
    pub const BACKUP: &str = "backup";
    pub const BACKUPS: &str = "backups";
    pub const RESTORE: &str = "restore";
    pub const EXPORT: &str = "export";
    pub const IMPORT: &str = "import";
    pub const SEND_FILE_PART: &str = "send_file_part";

    /// Every method the daemon answers, in the order the docs list them.
    pub const ALL: &[&str] = &[
        STATUS,
        HEALTH,
        INITIALIZE,
        RECONNECT,
        CLEAR_SESSION,
        RESTART,
        SEND,
        QR,
        PAIR_CODE,
        SUBSCRIBE,
        DIAGNOSE,
        OUTBOX,
        MESSAGES,
        CHATS,
        CONTACTS,
        GROUPS,
        REACT,
        MEDIA,
        MEDIA_PART,
        EDIT,
        DELETE,
        BACKUP,
        BACKUPS,
        RESTORE,
        EXPORT,
        IMPORT,
        SEND_FILE_PART,
    ];
}

/// Methods of server-pushed notifications.
pub mod notification {
    /// A QR payload pushed during a `qr` call; params: [`super::QrNotification`].
    pub const QR: &str = "qr";
    /// During a `qr` call, while no QR can be shown because the account
    /// cannot reach the server: params: [`super::QrWaiting`].
    pub const QR_WAITING: &str = "qr.waiting";
    /// An account event pushed during `subscribe`; params: [`super::Event`].
    pub const EVENT: &str = "event";
    /// Notifications were dropped because the client read too slowly;
    /// params: [`super::Lagged`].
    pub const LAGGED: &str = "lagged";
}

/// Error codes. -32768..-32000 is JSON-RPC's; walink's own are -32001 and below.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;

    pub const UNKNOWN_ACCOUNT: i64 = -32001;
    pub const NOT_CONNECTED: i64 = -32002;
    pub const INVALID_RECIPIENT: i64 = -32003;
    pub const INVALID_MESSAGE: i64 = -32004;
    pub const ALREADY_PAIRED: i64 = -32005;
    pub const INVALID_STATE: i64 = -32006;
    pub const TIMEOUT: i64 = -32007;
    pub const STORAGE: i64 = -32008;
    pub const SHUTTING_DOWN: i64 = -32009;
    pub const SEND_FAILED: i64 = -32010;
    pub const MEDIA_FAILED: i64 = -32011;
}

/// Whole seconds since the Unix epoch, the protocol's time format.
pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn yes() -> bool {
    true
}
