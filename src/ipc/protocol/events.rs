//! What `subscribe` pushes: an account's events, and the notice that some
//! were dropped because the client read too slowly.

use serde::{Deserialize, Serialize};

use super::{AccountState, MessageStatus, StoredMessage};

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
}
