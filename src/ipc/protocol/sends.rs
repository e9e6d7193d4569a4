//! Params and results of sending and of the outbox: `send`, the delivery
//! statuses a message goes through, and `outbox`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{SendFile, yes};

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
