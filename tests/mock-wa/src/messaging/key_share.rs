//! The app-state sync keys an account's phone shares with a new companion.
//!
//! A real primary sends its companion an `APP_STATE_SYNC_KEY_SHARE`
//! protocol message right after pairing; whatsapp-rust waits up to 10 s for
//! it before its first critical app-state sync. The mock's phone sends one
//! key per account at the device's first login, so that wait never happens.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use wacore_binary::Jid;
use waproto::whatsapp as wa;
use waproto::whatsapp::message::protocol_message::Type as ProtocolType;

use super::addressing::Addressing;
use super::directory::ServerView;
use super::hub::{Content, DeviceAddr, Messaging, Pending, PendingBody, SentText, State};
use super::stanza::{new_message_id, now_secs};

/// One app-state sync key as the phone shares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppStateKey {
    /// The key id clients look the key up by (6 bytes, as WhatsApp's are).
    pub id: Vec<u8>,
    pub data: [u8; 32],
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The account's ADV `raw_id`, as in the device list's `key-index-list`.
    pub raw_id: u32,
}

/// The keys account `phone` shares. They derive from the number, so a
/// test (or a second mock process) knows them without asking.
pub fn app_state_keys(phone: &str) -> Vec<AppStateKey> {
    let digest = Sha256::new()
        .chain_update(b"mock-wa app-state sync key\0")
        .chain_update(phone.as_bytes())
        .finalize();
    let mut data = [0u8; 32];
    data.copy_from_slice(&digest);
    let raw_id = super::directory::raw_id_of(phone);
    let [.., hi, lo] = raw_id.to_be_bytes();
    vec![AppStateKey {
        id: vec![0, 0, 0, 0, hi, lo],
        data,
        // A fixed time: the key's age means nothing to a client.
        timestamp: 1_700_000_000_000,
        raw_id,
    }]
}

/// The protocol message carrying `keys`.
pub(super) fn key_share_message(keys: &[AppStateKey]) -> wa::Message {
    let keys = keys
        .iter()
        .map(|k| wa::message::AppStateSyncKey {
            key_id: buffa::MessageField::some(wa::message::AppStateSyncKeyId {
                key_id: Some(k.id.clone()),
            }),
            key_data: buffa::MessageField::some(wa::message::AppStateSyncKeyData {
                key_data: Some(k.data.to_vec()),
                fingerprint: buffa::MessageField::some(wa::message::AppStateSyncKeyFingerprint {
                    raw_id: Some(k.raw_id),
                    current_index: Some(0),
                    device_indexes: vec![0],
                }),
                timestamp: Some(k.timestamp),
            }),
        })
        .collect();
    wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(ProtocolType::AppStateSyncKeyShare),
            app_state_sync_key_share: buffa::MessageField::some(
                wa::message::AppStateSyncKeyShare { keys },
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Messaging {
    /// Queues the phone's key share for companion `device` the first time it
    /// logs in; it goes out as soon as the device has uploaded its prekeys
    /// (right after this login, as a fresh device uploads them first).
    pub(super) fn share_keys_once(view: &dyn ServerView, state: &mut State, device: &Jid) {
        let addr = DeviceAddr::of(view, device);
        if addr.device == 0 || state.keys_shared.contains(&addr) {
            return;
        }
        let paired = view
            .account(&addr.user)
            .is_some_and(|a| a.companions.iter().any(|c| c.device == addr.device));
        if !paired {
            return;
        }
        state.keys_shared.insert(addr.clone());
        let pending = Pending {
            class: "message",
            id: new_message_id(),
            receipt_type: None,
            // The account's own phone writes to its companion by number.
            body: PendingBody::Plain(SentText {
                from: addr.user.clone(),
                content: Content::KeyShare(Arc::new(app_state_keys(&addr.user))),
                time: now_secs(),
                addressing: Addressing::Pn,
            }),
        };
        Self::enqueue(state, &addr, pending);
    }
}
