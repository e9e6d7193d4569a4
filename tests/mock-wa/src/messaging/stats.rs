//! Counters of the messaging side, merged into `GET /admin/stats`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Default)]
pub(crate) struct Counters {
    pub messages_received: AtomicU64,
    pub messages_duplicate: AtomicU64,
    pub messages_acked: AtomicU64,
    pub decrypt_failures: AtomicU64,
    pub own_device_copies: AtomicU64,
    pub receipts_sent: AtomicU64,
    pub receipts_received: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub messages_sent_to_devices: AtomicU64,
    pub client_acks: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MessagingStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MessagingStats {
            messages_received: get(&self.messages_received),
            messages_duplicate: get(&self.messages_duplicate),
            messages_acked: get(&self.messages_acked),
            decrypt_failures: get(&self.decrypt_failures),
            own_device_copies: get(&self.own_device_copies),
            receipts_sent: get(&self.receipts_sent),
            receipts_received: get(&self.receipts_received),
            messages_delivered: get(&self.messages_delivered),
            messages_sent_to_devices: get(&self.messages_sent_to_devices),
            client_acks: get(&self.client_acks),
        }
    }
}

/// One flat object, so the core can merge it into its own stats JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MessagingStats {
    /// Client messages to contacts decrypted (each message id once).
    pub messages_received: u64,
    /// Client messages whose id a contact had already received.
    pub messages_duplicate: u64,
    /// Server acks sent for client `<message>` stanzas.
    pub messages_acked: u64,
    /// Contact copies that could not be decrypted (still acked).
    pub decrypt_failures: u64,
    /// Copies addressed to the sender's own other devices (dropped).
    pub own_device_copies: u64,
    /// Delivery/read receipts contacts sent to accounts.
    pub receipts_sent: u64,
    /// Receipts clients sent for messages they got.
    pub receipts_received: u64,
    /// Messages contacts sent to accounts (one per deliver call).
    pub messages_delivered: u64,
    /// Contact message stanzas written to device connections (resends count).
    pub messages_sent_to_devices: u64,
    /// `<ack>` stanzas clients sent for what the mock delivered.
    pub client_acks: u64,
}
