//! What an account tells its subscribers (the supervisor, its outbox sender
//! and its snapshot task all speak through it).

use std::time::{Duration, SystemTime};

use super::state::AccountState;
use crate::messages::MessageView;
use crate::store::DeliveryStatus;

/// The current QR payload; in memory only, never logged or stored.
#[derive(Clone, PartialEq)]
pub struct Qr {
    pub code: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Qr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qr")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What subscribers of an account see.
#[derive(Debug, Clone)]
pub enum AccountEvent {
    StateChanged {
        state: AccountState,
        reason: Option<String>,
        attempt: Option<u32>,
        next_retry_at: Option<SystemTime>,
    },
    Qr(Qr),
    Paired {
        jid: String,
    },
    Message(Box<MessageView>),
    MessageStatus {
        id: String,
        chat: String,
        status: DeliveryStatus,
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
