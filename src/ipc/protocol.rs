//! The JSON-RPC 2.0 protocol spoken on walinkd's socket, shared by the daemon
//! and every client. One JSON object per line in each direction.
//!
//! Field names here are a public interface (`walink --json`, scripts using
//! `socat` + `jq`): add fields, never rename or remove them. Optional values
//! are always present, as `null` when unknown, so consumers can rely on keys.
//! Times are whole seconds since the Unix epoch (UTC), in fields ending in
//! `_at` or `_since`, plus `at` on events.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Shared with the account layer, which owns their meaning.
pub use crate::account::health::{HealthLevel, Recommendations};
pub use crate::account::state::AccountState;
/// `diagnose` result types, owned by the probe that fills them.
pub use crate::wa::diagnose::{DiagnoseReport, DiagnoseStep, StepStatus};

pub const JSONRPC_VERSION: &str = "2.0";

/// The longest request line the server reads, in bytes (newline excluded).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

mod backup;
mod files;
mod media;
mod people;
pub use backup::*;
pub use files::*;
pub use media::*;
pub use people::*;

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

// ---------------------------------------------------------------------------
// Framing

/// A request as a client writes it. `id: None` makes it a JSON-RPC
/// notification, which gets no reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

impl Request {
    pub fn new(id: u64, method: &str, params: Value) -> Request {
        Request {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id: Some(Value::from(id)),
            method: method.to_owned(),
            params,
        }
    }
}

/// A reply: `{"jsonrpc":"2.0","id":…,"result":…}` or `{…,"error":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    /// The request's id; `null` when the request could not be read far enough to know it.
    pub id: Value,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Result(Value),
    Error(RpcError),
}

impl Response {
    pub fn result(id: Value, result: Value) -> Response {
        Response {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id,
            outcome: Outcome::Result(result),
        }
    }

    pub fn error(id: Value, error: RpcError) -> Response {
        Response {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id,
            outcome: Outcome::Error(error),
        }
    }
}

/// A server-pushed message: `{"jsonrpc":"2.0","method":…,"params":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub jsonrpc: String,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

impl Notification {
    pub fn new(method: &str, params: Value) -> Notification {
        Notification {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            method: method.to_owned(),
            params,
        }
    }
}

/// A JSON-RPC error object. `message` says what failed and what to do;
/// `data`, when present, is an object with machine-readable details
/// (`account`, `state`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }

    pub fn parse_error(detail: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::PARSE_ERROR,
            format!("request is not valid JSON: {detail}; send one JSON object per line"),
        )
    }

    pub fn invalid_request(detail: impl fmt::Display) -> RpcError {
        RpcError::new(code::INVALID_REQUEST, format!("invalid request: {detail}"))
    }

    pub fn line_too_long() -> RpcError {
        RpcError::invalid_request(format!(
            "line longer than {MAX_LINE_BYTES} bytes was discarded; send one JSON object per line, at most {MAX_LINE_BYTES} bytes"
        ))
    }

    pub fn method_not_found(method: &str) -> RpcError {
        RpcError::new(
            code::METHOD_NOT_FOUND,
            format!(
                "unknown method {method:?}; methods are: {}",
                method::ALL.join(", ")
            ),
        )
        .with_data(json!({ "method": method }))
    }

    pub fn invalid_params(detail: impl fmt::Display) -> RpcError {
        RpcError::new(code::INVALID_PARAMS, format!("invalid params: {detail}"))
    }

    pub fn internal(detail: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::INTERNAL_ERROR,
            format!("internal error: {detail}; see walinkd's log"),
        )
    }

    /// `configured` lists the names the daemon knows, to help with typos.
    pub fn unknown_account(name: &str, configured: &[&str]) -> RpcError {
        let known = if configured.is_empty() {
            "no account is configured; add an [[account]] to walink.toml and reload".to_owned()
        } else {
            format!("configured accounts: {}", configured.join(", "))
        };
        RpcError::new(
            code::UNKNOWN_ACCOUNT,
            format!("unknown account {name:?}; {known}"),
        )
        .with_data(json!({ "account": name }))
    }

    pub fn not_connected(account: &str, state: AccountState) -> RpcError {
        RpcError::new(
            code::NOT_CONNECTED,
            format!(
                "account {account:?} is not connected (state: {state}); see `walink status {account}`"
            ),
        )
        .with_data(json!({ "account": account, "state": state }))
    }

    pub fn invalid_recipient(to: &str, why: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::INVALID_RECIPIENT,
            format!("invalid recipient {to:?}: {why}"),
        )
        .with_data(json!({ "to": to }))
    }

    pub fn invalid_message(why: impl fmt::Display) -> RpcError {
        RpcError::new(code::INVALID_MESSAGE, format!("invalid message: {why}"))
    }

    pub fn already_paired(account: &str, jid: &str) -> RpcError {
        RpcError::new(
            code::ALREADY_PAIRED,
            format!(
                "account {account:?} is already linked as {jid}; run `walink clear-session {account}` first to link another phone"
            ),
        )
        .with_data(json!({ "account": account, "jid": jid }))
    }

    /// `what` is the refused operation and the way out, e.g.
    /// "cannot send while logged out; run `walink initialize sales` and pair again".
    pub fn invalid_state(account: &str, state: AccountState, what: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::INVALID_STATE,
            format!("account {account:?} is {state}: {what}"),
        )
        .with_data(json!({ "account": account, "state": state }))
    }

    pub fn timeout(what: impl fmt::Display) -> RpcError {
        RpcError::new(code::TIMEOUT, format!("timed out: {what}"))
    }

    pub fn storage(detail: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::STORAGE,
            format!("storage error: {detail}; check the disk and walinkd's log"),
        )
    }

    pub fn shutting_down() -> RpcError {
        RpcError::new(
            code::SHUTTING_DOWN,
            "walinkd is shutting down; retry once it is back",
        )
    }

    pub fn send_failed(detail: impl fmt::Display) -> RpcError {
        RpcError::new(code::SEND_FAILED, format!("send failed: {detail}"))
    }

    /// A received file could not be fetched, checked or written.
    pub fn media_failed(id: &str, detail: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::MEDIA_FAILED,
            format!("fetching the file of message {id} failed: {detail}"),
        )
        .with_data(json!({ "id": id }))
    }
}

/// Deserializes method params, treating absent/`null` params as `{}` and
/// reporting unknown or mistyped fields as `invalid params`.
pub fn parse_params<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    let params = match params {
        Value::Null => Value::Object(Default::default()),
        Value::Object(map) => Value::Object(map),
        other => {
            return Err(RpcError::invalid_params(format!(
                "params must be an object, got {}",
                json_kind(&other)
            )));
        }
    };
    serde_json::from_value(params).map_err(RpcError::invalid_params)
}

/// Serializes a method's result for [`super::server::Handler::handle`].
pub fn to_result<T: Serialize>(result: &T) -> Result<Value, RpcError> {
    serde_json::to_value(result).map_err(RpcError::internal)
}

/// "string", "array", … for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whole seconds since the Unix epoch, the protocol's time format.
pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Method params and results

/// Params of `status`, `health` and `subscribe`: one account, or all when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFilter {
    #[serde(default)]
    pub account: Option<String>,
}

/// Params of `initialize`, `reconnect`, `clear_session`, `restart` and `qr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountParams {
    pub account: String,
}

/// Result of `initialize`, `reconnect`, `clear_session` and `restart`: the
/// account's state once the command was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub account: String,
    pub state: AccountState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    pub accounts: Vec<AccountStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub level: HealthLevel,
    /// Why the level is not `healthy`, one short sentence each; empty when healthy.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    /// Short snake_case code, e.g. `closed`, `restart_required`, `network`,
    /// `server_error`, `rate_limited`, `connect_timeout`, `logged_out`, `replaced`.
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Credentials are stored for this account.
    pub exists: bool,
    /// They were accepted by the server the last time they were used (or
    /// have not been refused yet).
    pub valid: bool,
    /// Size of the account's stored state on disk.
    pub size_bytes: u64,
    /// What the last validation of the stored state found wrong; `valid`
    /// is false while this is not empty.
    #[serde(default)]
    pub problems: Vec<String>,
    /// When the stored state was last validated.
    #[serde(default)]
    pub validated_at: Option<u64>,
    /// When the newest backup generation was taken.
    #[serde(default)]
    pub last_backup_at: Option<u64>,
}

/// One account in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountStatus {
    pub name: String,
    pub state: AccountState,
    /// The linked WhatsApp identity, e.g. `15551234567:12@s.whatsapp.net`.
    pub jid: Option<String>,
    pub health: Health,
    /// Start of the current connection; `null` unless connected.
    pub connected_since: Option<u64>,
    /// Seconds in the current connection; `null` unless connected.
    pub uptime_secs: Option<u64>,
    /// Failed attempts since the account was last connected.
    pub reconnect_attempts: u32,
    /// Connections re-established without anyone asking, since walinkd started.
    pub automatic_reconnections: u64,
    pub last_disconnect: Option<Disconnect>,
    /// When the next attempt is due; `null` unless `reconnecting`.
    pub next_retry_at: Option<u64>,
    pub last_keepalive_rtt_ms: Option<u64>,
    pub session: SessionInfo,
    pub recommendations: Recommendations,
    /// Messages waiting to be sent, and messages given up on.
    #[serde(default)]
    pub outbox: OutboxCounts,
    /// The WhatsApp Web version the account announces; `null` before its
    /// first connect.
    #[serde(default)]
    pub version: Option<WebVersionInfo>,
}

/// `status` → `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebVersionInfo {
    /// e.g. `2.3000.1026131876`.
    pub version: String,
    /// `pinned` (connection.client_version), `fetched` (from
    /// web.whatsapp.com within a day), `stored` (the last one that worked:
    /// the fetch is failing or not due) or `built_in` (never fetched).
    pub source: String,
    /// Why the last fetch of the version page failed, until one succeeds.
    pub fetch_error: Option<String>,
}

/// `status` → `outbox`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxCounts {
    /// Queued or sent, not yet acknowledged by the server.
    pub queued: u64,
    pub failed: u64,
}

/// `health` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    /// The worst level among `accounts` (`healthy` when there are none).
    pub level: HealthLevel,
    pub accounts: Vec<AccountHealth>,
}

impl HealthResult {
    pub fn new(accounts: Vec<AccountHealth>) -> HealthResult {
        let level = accounts
            .iter()
            .map(|a| a.health.level)
            .max()
            .unwrap_or(HealthLevel::Healthy);
        HealthResult { level, accounts }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHealth {
    pub name: String,
    pub state: AccountState,
    pub health: Health,
    pub recommendations: Recommendations,
}

impl From<&AccountStatus> for AccountHealth {
    fn from(status: &AccountStatus) -> AccountHealth {
        AccountHealth {
            name: status.name.clone(),
            state: status.state,
            health: status.health.clone(),
            recommendations: status.recommendations.clone(),
        }
    }
}

/// `send` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendParams {
    pub account: String,
    /// A phone number in international format (`+15551234567`, spaces and
    /// dashes allowed) or a JID (`15551234567@s.whatsapp.net`, `…@g.us`).
    pub to: String,
    /// The text, or the caption of `file` (empty for none).
    #[serde(default)]
    pub text: String,
    /// Idempotency key: the same key always yields the same message id, so
    /// a retried send is delivered once.
    #[serde(default)]
    pub id: Option<String>,
    /// Wait for the server's ack (default). `false` answers as soon as the
    /// message is queued durably.
    #[serde(default = "yes")]
    pub wait: bool,
    /// The id of the message this one answers (it is quoted).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// A file to send (see `send_file_part`), with `text` as its caption.
    #[serde(default)]
    pub file: Option<SendFile>,
}

fn yes() -> bool {
    true
}

/// `send` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResult {
    /// The WhatsApp message id.
    pub id: String,
    pub status: MessageStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Sent,
    ServerAck,
    Delivered,
    Read,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sent => "sent",
            MessageStatus::ServerAck => "server_ack",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Params of `outbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxParams {
    pub account: String,
    /// Also the messages that are done (acked, delivered, read), newest first.
    #[serde(default)]
    pub all: bool,
}

/// One message of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: String,
    pub to: String,
    pub text: String,
    pub status: MessageStatus,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
    pub attempts: u32,
    /// Why the last attempt failed, or why the message `failed`.
    pub last_error: Option<String>,
}

/// `outbox` result: pending (queued, sent) and failed messages, oldest
/// first; with `all`, every stored message, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxResult {
    pub messages: Vec<OutboxMessage>,
}

/// Params of `messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesParams {
    pub account: String,
    /// Only this conversation: any address of the person (`+15551234567`,
    /// a phone or LID JID) or a group JID; normalized to a JID when parsed.
    #[serde(default)]
    pub chat: Option<String>,
    /// Page size, 1 to [`MAX_PAGE`]; default [`DEFAULT_PAGE`].
    #[serde(default)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page: only older messages.
    #[serde(default)]
    pub before: Option<u64>,
    /// Only messages whose text holds every word of this (full-text search).
    #[serde(default)]
    pub search: Option<String>,
}

/// Longest `search` accepted, in bytes.
pub const MAX_SEARCH: usize = 1024;

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;

/// `messages` result, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesResult {
    pub messages: Vec<StoredMessage>,
    /// `before` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<u64>,
}

/// `chats` result, most recently active first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatsResult {
    pub chats: Vec<ChatInfo>,
}

/// Params of the `qr` notifications pushed during a `qr` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrNotification {
    pub account: String,
    /// The payload to encode as a QR code; secret, never log it.
    pub code: String,
    /// Seconds until this code is replaced by the next one.
    pub timeout_secs: u64,
}

/// Why `qr` has no code to show yet: the account's state and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrWaiting {
    pub account: String,
    pub state: AccountState,
    pub reason: Option<String>,
    /// When the next attempt is due (Unix seconds), if one is scheduled.
    pub next_retry_at: Option<u64>,
}

/// Final result of `qr`, once the phone has linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrResult {
    pub jid: String,
}

/// `pair_code` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairCodeParams {
    pub account: String,
    /// Phone number of the WhatsApp account to link, international format.
    pub phone: String,
}

/// `pair_code` result: the code to type on the phone
/// (WhatsApp → Linked devices → Link with phone number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCodeResult {
    pub code: String,
}

/// Params of the `lagged` notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lagged {
    /// Notifications dropped since the last one delivered.
    pub missed: u64,
}

/// Params of an `event` notification:
/// `{"account":"sales","at":1763776000,"kind":"state_changed",…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub account: String,
    pub at: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    StateChanged {
        state: AccountState,
        /// Why, as in [`Disconnect::reason`]; or what asked for it (`initialize`, …).
        reason: Option<String>,
        /// Reconnect attempt number while `reconnecting`.
        attempt: Option<u32>,
        next_retry_at: Option<u64>,
    },
    Qr {
        code: String,
        timeout_secs: u64,
    },
    Paired {
        jid: String,
    },
    /// The message, as `messages` lists it (nested: its own `kind` says
    /// what the message is).
    MessageReceived {
        message: Box<StoredMessage>,
    },
    MessageStatus {
        id: String,
        /// JID of the recipient chat.
        chat: String,
        status: MessageStatus,
        /// Why, when `failed`.
        reason: Option<String>,
    },
    BackupDone {
        generation: u64,
        size_bytes: u64,
    },
    RestoredFromBackup {
        generation: u64,
    },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::StateChanged { .. } => "state_changed",
            EventKind::Qr { .. } => "qr",
            EventKind::Paired { .. } => "paired",
            EventKind::MessageReceived { .. } => "message_received",
            EventKind::MessageStatus { .. } => "message_status",
            EventKind::BackupDone { .. } => "backup_done",
            EventKind::RestoredFromBackup { .. } => "restored_from_backup",
        }
    }
}

// ---------------------------------------------------------------------------
// Typed dispatch

/// A request decoded and checked: what a `Handler` matches on. Validation
/// that needs no daemon state (shape, phone numbers, empty text) is done
/// here, once, for every client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Status(AccountFilter),
    Health(AccountFilter),
    Initialize(AccountParams),
    Reconnect(AccountParams),
    ClearSession(ClearSessionParams),
    Restart(AccountParams),
    /// `to` is already normalized to a JID (see [`recipient_jid`]).
    Send(SendParams),
    Qr(AccountParams),
    /// `phone` is already normalized to digits (see [`normalize_phone`]).
    PairCode(PairCodeParams),
    Subscribe(AccountFilter),
    /// Checks the network path to WhatsApp with the account's settings
    /// (or the daemon's when no account is given).
    Diagnose(AccountFilter),
    Outbox(OutboxParams),
    Messages(MessagesParams),
    Chats(AccountParams),
    /// `check` is already normalized to digits.
    Contacts(ContactsParams),
    Groups(AccountParams),
    React(ReactParams),
    /// `path` or `dir` is set, absolute.
    Media(MediaParams),
    MediaPart(MediaPartParams),
    Edit(EditParams),
    Delete(DeleteParams),
    Backup(AccountParams),
    Backups(AccountParams),
    Restore(RestoreParams),
    Export(AccountParams),
    Import(ImportParams),
    SendFilePart(SendFilePartParams),
}

/// Longest idempotency key accepted by `send`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Longest text accepted by `send`, in bytes. WhatsApp takes 65,536
/// characters, but a request line is at most [`MAX_LINE_BYTES`], so this
/// leaves room for the rest of the request and names the real limit.
pub const MAX_TEXT_BYTES: usize = 60 * 1024;

impl Call {
    pub fn parse(method: &str, params: Value) -> Result<Call, RpcError> {
        Ok(match method {
            method::STATUS => Call::Status(parse_params(params)?),
            method::HEALTH => Call::Health(parse_params(params)?),
            method::INITIALIZE => Call::Initialize(parse_params(params)?),
            method::RECONNECT => Call::Reconnect(parse_params(params)?),
            method::CLEAR_SESSION => Call::ClearSession(parse_params(params)?),
            method::RESTART => Call::Restart(parse_params(params)?),
            method::QR => Call::Qr(parse_params(params)?),
            method::SUBSCRIBE => Call::Subscribe(parse_params(params)?),
            method::DIAGNOSE => Call::Diagnose(parse_params(params)?),
            method::SEND => {
                let mut send: SendParams = parse_params(params)?;
                send.to = recipient_jid(&send.to)
                    .map_err(|why| RpcError::invalid_recipient(&send.to, why))?;
                if let Some(file) = &send.file {
                    check_file(file).map_err(RpcError::invalid_params)?;
                } else {
                    check_text(&send.text)?;
                }
                if send.text.len() > MAX_TEXT_BYTES {
                    return Err(text_too_long(&send.text));
                }
                if let Some(key) = &send.id {
                    check_idempotency_key(key).map_err(RpcError::invalid_params)?;
                }
                if let Some(reply_to) = &send.reply_to {
                    check_message_id(reply_to).map_err(RpcError::invalid_params)?;
                }
                Call::Send(send)
            }
            method::OUTBOX => Call::Outbox(parse_params(params)?),
            method::CHATS => Call::Chats(parse_params(params)?),
            method::GROUPS => Call::Groups(parse_params(params)?),
            method::REACT => {
                let p: ReactParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                if p.emoji.chars().count() > MAX_EMOJI_CHARS {
                    return Err(RpcError::invalid_params(format!(
                        "emoji must be at most {MAX_EMOJI_CHARS} characters (one emoji; empty removes the reaction)"
                    )));
                }
                Call::React(p)
            }
            method::MEDIA => {
                let p: MediaParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                match (&p.path, &p.dir) {
                    (Some(path), None) | (None, Some(path))
                        if std::path::Path::new(path).is_absolute() => {}
                    _ => {
                        return Err(RpcError::invalid_params(
                            "give either path (a file) or dir (a directory), as an absolute path",
                        ));
                    }
                }
                Call::Media(p)
            }
            method::MEDIA_PART => {
                let p: MediaPartParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                check_transfer(&p.transfer).map_err(RpcError::invalid_params)?;
                Call::MediaPart(p)
            }
            method::EDIT => {
                let p: EditParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                check_text(&p.text)?;
                Call::Edit(p)
            }
            method::DELETE => {
                let p: DeleteParams = parse_params(params)?;
                check_message_id(&p.id).map_err(RpcError::invalid_params)?;
                Call::Delete(p)
            }
            method::CONTACTS => {
                let mut p: ContactsParams = parse_params(params)?;
                if let Some(check) = &mut p.check {
                    if check.is_empty() || check.len() > MAX_CHECK {
                        return Err(RpcError::invalid_params(format!(
                            "check takes 1 to {MAX_CHECK} phone numbers"
                        )));
                    }
                    for phone in check.iter_mut() {
                        *phone = normalize_phone(phone).map_err(|why| {
                            RpcError::invalid_params(format!("check {phone:?}: {why}"))
                        })?;
                    }
                }
                Call::Contacts(p)
            }
            method::BACKUP => Call::Backup(parse_params(params)?),
            method::BACKUPS => Call::Backups(parse_params(params)?),
            method::RESTORE => Call::Restore(parse_params(params)?),
            method::EXPORT => Call::Export(parse_params(params)?),
            method::IMPORT => {
                let p: ImportParams = parse_params(params)?;
                if p.parts == 0 || p.part >= p.parts || p.data.len() > MAX_IMPORT_PART {
                    return Err(RpcError::invalid_params(format!(
                        "import parts are numbered 0 to parts-1, each at most {MAX_IMPORT_PART} base64 characters"
                    )));
                }
                Call::Import(p)
            }
            method::SEND_FILE_PART => {
                let p: SendFilePartParams = parse_params(params)?;
                check_transfer(&p.transfer).map_err(RpcError::invalid_params)?;
                if p.data.len() > MAX_FILE_PART {
                    return Err(RpcError::invalid_params(format!(
                        "a file part is at most {MAX_FILE_PART} base64 characters"
                    )));
                }
                Call::SendFilePart(p)
            }
            method::MESSAGES => {
                let mut p: MessagesParams = parse_params(params)?;
                if let Some(chat) = &p.chat {
                    p.chat = Some(
                        recipient_jid(chat)
                            .map_err(|why| RpcError::invalid_params(format!("chat: {why}")))?,
                    );
                }
                if p.limit.is_some_and(|l| !(1..=MAX_PAGE).contains(&l)) {
                    return Err(RpcError::invalid_params(format!(
                        "limit must be 1 to {MAX_PAGE}"
                    )));
                }
                if let Some(search) = &p.search
                    && (search.trim().is_empty() || search.len() > MAX_SEARCH)
                {
                    return Err(RpcError::invalid_params(format!(
                        "search must hold a word and be at most {MAX_SEARCH} bytes"
                    )));
                }
                Call::Messages(p)
            }
            method::PAIR_CODE => {
                let mut pair: PairCodeParams = parse_params(params)?;
                pair.phone = normalize_phone(&pair.phone)
                    .map_err(|why| RpcError::invalid_params(format!("phone: {why}")))?;
                Call::PairCode(pair)
            }
            other => return Err(RpcError::method_not_found(other)),
        })
    }

    /// The account the call is about; `None` for "all accounts".
    pub fn account(&self) -> Option<&str> {
        match self {
            Call::Status(f) | Call::Health(f) | Call::Subscribe(f) | Call::Diagnose(f) => {
                f.account.as_deref()
            }
            Call::Initialize(p)
            | Call::Reconnect(p)
            | Call::Backup(p)
            | Call::Backups(p)
            | Call::Export(p)
            | Call::Restart(p)
            | Call::Qr(p)
            | Call::Chats(p)
            | Call::Groups(p) => Some(&p.account),
            Call::Send(s) => Some(&s.account),
            Call::Outbox(p) => Some(&p.account),
            Call::Messages(p) => Some(&p.account),
            Call::Contacts(p) => Some(&p.account),
            Call::React(p) => Some(&p.account),
            Call::Media(p) => Some(&p.account),
            Call::MediaPart(p) => Some(&p.account),
            Call::Edit(p) => Some(&p.account),
            Call::Delete(p) => Some(&p.account),
            Call::PairCode(p) => Some(&p.account),
            Call::ClearSession(p) => Some(&p.account),
            Call::Restore(p) => Some(&p.account),
            Call::Import(p) => Some(&p.account),
            Call::SendFilePart(p) => Some(&p.account),
        }
    }
}

/// A message's text: not empty, at most [`MAX_TEXT_BYTES`].
fn check_text(text: &str) -> Result<(), RpcError> {
    if text.trim().is_empty() {
        return Err(RpcError::invalid_message(
            "text is empty; give the text to send",
        ));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(text_too_long(text));
    }
    Ok(())
}

fn text_too_long(text: &str) -> RpcError {
    RpcError::invalid_message(format!(
        "text is {} bytes; at most {MAX_TEXT_BYTES} are accepted, split it",
        text.len()
    ))
}

/// A WhatsApp message id as `reply_to` and `react` take it.
fn check_message_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(format!(
            "message id {id:?} must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} letters and digits, as `walink messages` shows it"
        ));
    }
    Ok(())
}

fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(format!(
            "id must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes long"
        ));
    }
    if key.chars().any(|c| !c.is_ascii_graphic()) {
        return Err("id must be printable ASCII without spaces".to_owned());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Phone numbers and recipients

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("no phone number given; use international format, e.g. +15551234567")]
    Empty,
    #[error(
        "{0:?} is not allowed in a phone number; use digits with an optional leading +, spaces, dashes, dots or parentheses"
    )]
    InvalidCharacter(char),
    #[error(
        "starts with 0; use international format with the country code and no trunk prefix, e.g. +15551234567"
    )]
    LeadingZero,
    #[error("has {0} digits; a phone number in international format has 7 to 15")]
    Length(usize),
}

/// The digits of a phone number in international format: `"+1 555-123-4567"`
/// → `"15551234567"`. Accepts `+` at the start and spaces, dashes, dots and
/// parentheses as separators; requires 7 to 15 digits (E.164) not starting with 0.
pub fn normalize_phone(input: &str) -> Result<String, PhoneError> {
    let trimmed = input.trim();
    let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let mut digits = String::with_capacity(body.len());
    for c in body.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            other => return Err(PhoneError::InvalidCharacter(other)),
        }
    }
    if digits.is_empty() {
        return Err(PhoneError::Empty);
    }
    if digits.starts_with('0') {
        return Err(PhoneError::LeadingZero);
    }
    if !(7..=15).contains(&digits.len()) {
        return Err(PhoneError::Length(digits.len()));
    }
    Ok(digits)
}

/// WhatsApp's server for user JIDs.
pub const USER_SERVER: &str = "s.whatsapp.net";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    #[error(transparent)]
    Phone(#[from] PhoneError),
    #[error(
        "unsupported JID server {0:?}; use a phone number or a JID ending in @s.whatsapp.net, @g.us or @lid"
    )]
    Server(String),
    #[error("the part before @ must be digits (with '-' for old group ids)")]
    User,
}

/// Turns a `send` recipient into a JID: a phone number becomes
/// `DIGITS@s.whatsapp.net`; a JID on `s.whatsapp.net`, `g.us` or `lid` is
/// kept (device suffixes are refused: messages go to a user, not a device).
pub fn recipient_jid(to: &str) -> Result<String, RecipientError> {
    let to = to.trim();
    let Some((user, server)) = to.split_once('@') else {
        return Ok(format!("{}@{USER_SERVER}", normalize_phone(to)?));
    };
    let user_ok = match server {
        USER_SERVER | "lid" => !user.is_empty() && user.chars().all(|c| c.is_ascii_digit()),
        "g.us" => {
            !user.is_empty()
                && user.chars().all(|c| c.is_ascii_digit() || c == '-')
                && !user.starts_with('-')
                && !user.ends_with('-')
        }
        other => return Err(RecipientError::Server(other.to_owned())),
    };
    if !user_ok {
        return Err(RecipientError::User);
    }
    Ok(to.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_status() -> AccountStatus {
        AccountStatus {
            name: "sales".into(),
            state: AccountState::Reconnecting,
            jid: Some("15551234567:3@s.whatsapp.net".into()),
            health: Health {
                level: HealthLevel::Degraded,
                reasons: vec!["reconnecting after network error (attempt 2)".into()],
            },
            connected_since: None,
            uptime_secs: None,
            reconnect_attempts: 2,
            automatic_reconnections: 7,
            last_disconnect: Some(Disconnect {
                reason: "network".into(),
                at: 1_763_776_000,
            }),
            next_retry_at: Some(1_763_776_005),
            last_keepalive_rtt_ms: Some(84),
            session: SessionInfo {
                exists: true,
                valid: true,
                size_bytes: 40960,
                problems: vec![],
                validated_at: Some(1763776100),
                last_backup_at: Some(1763776200),
            },
            recommendations: Recommendations {
                should_reconnect: true,
                ..Recommendations::default()
            },
            outbox: OutboxCounts {
                queued: 3,
                failed: 1,
            },
            version: Some(WebVersionInfo {
                version: "2.3000.1026131876".into(),
                source: "stored".into(),
                fetch_error: None,
            }),
        }
    }

    #[test]
    fn account_status_json_field_names_are_stable() {
        let value = serde_json::to_value(sample_status()).unwrap();
        assert_eq!(
            value,
            json!({
                "name": "sales",
                "state": "reconnecting",
                "jid": "15551234567:3@s.whatsapp.net",
                "health": {"level": "degraded", "reasons": ["reconnecting after network error (attempt 2)"]},
                "connected_since": null,
                "uptime_secs": null,
                "reconnect_attempts": 2,
                "automatic_reconnections": 7,
                "last_disconnect": {"reason": "network", "at": 1763776000},
                "next_retry_at": 1763776005,
                "last_keepalive_rtt_ms": 84,
                "session": {
                    "exists": true,
                    "valid": true,
                    "size_bytes": 40960,
                    "problems": [],
                    "validated_at": 1763776100,
                    "last_backup_at": 1763776200
                },
                "recommendations": {
                    "needs_pairing": false,
                    "should_reconnect": true,
                    "should_clear_session": false,
                    "should_restore_backup": false
                },
                "outbox": {"queued": 3, "failed": 1},
                "version": {"version": "2.3000.1026131876", "source": "stored", "fetch_error": null}
            })
        );
        let back: AccountStatus = serde_json::from_value(value).unwrap();
        assert_eq!(back, sample_status());
    }

    #[test]
    fn every_state_has_its_documented_name() {
        let names: Vec<String> = AccountState::ALL
            .iter()
            .map(|s| {
                let json = serde_json::to_value(s).unwrap();
                assert_eq!(json, Value::from(s.as_str()));
                s.to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "stopped",
                "connecting",
                "waiting_for_pairing",
                "connected",
                "reconnecting",
                "logged_out",
                "replaced",
                "failed"
            ]
        );
    }

    #[test]
    fn health_result_takes_the_worst_level() {
        let mut a = AccountHealth::from(&sample_status());
        let mut b = a.clone();
        a.health.level = HealthLevel::Critical;
        b.health.level = HealthLevel::Healthy;
        assert_eq!(HealthResult::new(vec![a, b]).level, HealthLevel::Critical);
        assert_eq!(HealthResult::new(vec![]).level, HealthLevel::Healthy);
    }

    #[test]
    fn response_shapes() {
        let ok = Response::result(json!(1), json!({"id": "3EB0"}));
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"id": "3EB0"}})
        );
        let err = Response::error(json!("a"), RpcError::method_not_found("nope"));
        let value = serde_json::to_value(&err).unwrap();
        assert_eq!(value["error"]["code"], json!(-32601));
        assert_eq!(value["error"]["data"], json!({"method": "nope"}));
        assert!(value.get("result").is_none());
        let back: Response = serde_json::from_value(value).unwrap();
        assert_eq!(back, err);
        let null_result: Response =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":2,"result":null}"#).unwrap();
        assert_eq!(null_result.outcome, Outcome::Result(Value::Null));
    }

    #[test]
    fn request_without_id_serializes_as_notification() {
        let mut req = Request::new(5, "status", Value::Null);
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"jsonrpc":"2.0","id":5,"method":"status"}"#
        );
        req.id = None;
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"jsonrpc":"2.0","method":"status"}"#
        );
    }

    #[test]
    fn event_is_flat_and_tagged_by_kind() {
        let event = Event {
            account: "sales".into(),
            at: 1_763_776_000,
            kind: EventKind::StateChanged {
                state: AccountState::Reconnecting,
                reason: Some("network".into()),
                attempt: Some(3),
                next_retry_at: Some(1_763_776_015),
            },
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(
            value,
            json!({"account": "sales", "at": 1763776000, "kind": "state_changed",
                   "state": "reconnecting", "reason": "network", "attempt": 3,
                   "next_retry_at": 1763776015})
        );
        assert_eq!(serde_json::from_value::<Event>(value).unwrap(), event);

        let paired = serde_json::to_value(Event {
            account: "a".into(),
            at: 1,
            kind: EventKind::Paired {
                jid: "1@s.whatsapp.net".into(),
            },
        })
        .unwrap();
        assert_eq!(
            paired,
            json!({"account": "a", "at": 1, "kind": "paired", "jid": "1@s.whatsapp.net"})
        );
        let status = serde_json::to_value(EventKind::MessageStatus {
            id: "X".into(),
            chat: "1@s.whatsapp.net".into(),
            status: MessageStatus::ServerAck,
            reason: None,
        })
        .unwrap();
        assert_eq!(status["kind"], "message_status");
        assert_eq!(status["status"], "server_ack");
    }

    #[test]
    fn qr_notification_shape() {
        let n = Notification::new(
            notification::QR,
            serde_json::to_value(QrNotification {
                account: "sales".into(),
                code: "2@abc,def,ghi".into(),
                timeout_secs: 20,
            })
            .unwrap(),
        );
        assert_eq!(
            serde_json::to_value(n).unwrap(),
            json!({"jsonrpc": "2.0", "method": "qr",
                   "params": {"account": "sales", "code": "2@abc,def,ghi", "timeout_secs": 20}})
        );
    }

    #[test]
    fn phone_normalization() {
        assert_eq!(normalize_phone("+1 555-123-4567").unwrap(), "15551234567");
        assert_eq!(normalize_phone("(49) 30.1234567").unwrap(), "49301234567");
        assert_eq!(normalize_phone(" 4915112345678 ").unwrap(), "4915112345678");
        assert_eq!(normalize_phone("1234567").unwrap(), "1234567");
        assert_eq!(
            normalize_phone("123456789012345").unwrap(),
            "123456789012345"
        );
        assert_eq!(normalize_phone(""), Err(PhoneError::Empty));
        assert_eq!(normalize_phone("+"), Err(PhoneError::Empty));
        assert_eq!(
            normalize_phone("+1 555 12a"),
            Err(PhoneError::InvalidCharacter('a'))
        );
        assert_eq!(
            normalize_phone("++15551234567"),
            Err(PhoneError::InvalidCharacter('+'))
        );
        assert_eq!(
            normalize_phone("0151 1234567"),
            Err(PhoneError::LeadingZero)
        );
        assert_eq!(normalize_phone("123456"), Err(PhoneError::Length(6)));
        assert_eq!(
            normalize_phone("1234567890123456"),
            Err(PhoneError::Length(16))
        );
        assert!(PhoneError::Length(6).to_string().contains("7 to 15"));
    }

    #[test]
    fn recipients_become_jids() {
        assert_eq!(
            recipient_jid("+1 555 123 4567").unwrap(),
            "15551234567@s.whatsapp.net"
        );
        assert_eq!(
            recipient_jid("15551234567@s.whatsapp.net").unwrap(),
            "15551234567@s.whatsapp.net"
        );
        assert_eq!(
            recipient_jid("120363012345678901@g.us").unwrap(),
            "120363012345678901@g.us"
        );
        assert_eq!(
            recipient_jid("15551234567-1600000000@g.us").unwrap(),
            "15551234567-1600000000@g.us"
        );
        assert_eq!(recipient_jid("123456789@lid").unwrap(), "123456789@lid");
        assert!(matches!(
            recipient_jid("1@example.com"),
            Err(RecipientError::Server(_))
        ));
        assert_eq!(
            recipient_jid("1555:2@s.whatsapp.net"),
            Err(RecipientError::User)
        );
        assert_eq!(recipient_jid("@s.whatsapp.net"), Err(RecipientError::User));
        assert!(matches!(
            recipient_jid("12"),
            Err(RecipientError::Phone(PhoneError::Length(2)))
        ));
    }

    #[test]
    fn call_parse_validates_once_for_everyone() {
        assert_eq!(
            Call::parse("status", Value::Null).unwrap(),
            Call::Status(AccountFilter { account: None })
        );
        let send = Call::parse(
            "send",
            json!({"account": "sales", "to": "+1 555 123 4567", "text": "hi", "id": "order-7"}),
        )
        .unwrap();
        let Call::Send(send) = send else {
            panic!("not a send: {send:?}")
        };
        assert_eq!(send.to, "15551234567@s.whatsapp.net");
        assert_eq!(send.id.as_deref(), Some("order-7"));
        assert!(send.wait, "waits for the ack unless told not to");

        let err = Call::parse(
            "send",
            json!({"account": "s", "to": "+15551234567", "text": "x".repeat(MAX_TEXT_BYTES + 1)}),
        )
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_MESSAGE);
        assert!(err.message.contains("at most"), "{}", err.message);

        let err = Call::parse("messages", json!({"account": "s", "limit": 0})).unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);
        let Call::Messages(m) =
            Call::parse("messages", json!({"account": "s", "chat": "+15551234567"})).unwrap()
        else {
            panic!("not messages")
        };
        assert_eq!(m.chat.as_deref(), Some("15551234567@s.whatsapp.net"));

        let err =
            Call::parse("send", json!({"account": "s", "to": "12", "text": "hi"})).unwrap_err();
        assert_eq!(err.code, code::INVALID_RECIPIENT);
        assert!(err.message.contains("7 to 15"), "{}", err.message);

        let err = Call::parse(
            "send",
            json!({"account": "s", "to": "+15551234567", "text": "  "}),
        )
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_MESSAGE);

        let err = Call::parse(
            "send",
            json!({"account": "s", "to": "+15551234567", "text": "x", "id": "a b"}),
        )
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);

        let err = Call::parse("status", json!({"acount": "sales"})).unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);
        assert!(err.message.contains("acount"), "{}", err.message);

        let err = Call::parse("initialize", json!({})).unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);
        assert!(err.message.contains("account"), "{}", err.message);

        let err = Call::parse("status", json!([1])).unwrap_err();
        assert!(err.message.contains("must be an object"), "{}", err.message);

        let Call::PairCode(pair) = Call::parse(
            "pair_code",
            json!({"account": "s", "phone": "+49 151 1234 5678"}),
        )
        .unwrap() else {
            panic!("not pair_code")
        };
        assert_eq!(pair.phone, "4915112345678");
        let err = Call::parse("pair_code", json!({"account": "s", "phone": "abc"})).unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);

        let err = Call::parse("frobnicate", Value::Null).unwrap_err();
        assert_eq!(err.code, code::METHOD_NOT_FOUND);
        assert!(err.message.contains("status, health"), "{}", err.message);
    }
}
