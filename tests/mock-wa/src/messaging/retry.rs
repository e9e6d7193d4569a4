//! Retry receipts: a device could not decrypt what a contact sent it.

use wacore_binary::Node;

use super::bundle::{child_bytes, id_from_bytes, key_32};
use super::directory::ServerView;
use super::hub::{DeviceAddr, Messaging, Pending, PendingBody};

impl Messaging {
    /// Does what the contact's phone would: drop the broken session, start
    /// a fresh one from the keys the receipt carries (or the device's
    /// uploaded ones) and send the message again under the same id.
    pub(super) async fn resend_after_retry(
        &self,
        view: &dyn ServerView,
        addr: &DeviceAddr,
        id: &str,
        receipt: &Node,
    ) {
        let mut state = self.state.lock().await;
        let Some(sent) = state.sent.get(&(addr.clone(), id.to_string())).cloned() else {
            tracing::warn!(device = ?addr, id, "retry receipt for a message the mock did not send (or no longer remembers); ignored");
            return;
        };
        if let Some(keys) = receipt.get_optional_child("keys") {
            apply_retry_keys(&mut state.uploads, addr, receipt, keys);
        }
        let peer = addr.signal_address();
        match state.contact(&sent.from) {
            Ok(contact) => contact.forget_session(&peer),
            Err(e) => {
                tracing::warn!(device = ?addr, id, error = %e, "cannot resend after retry");
                return;
            }
        }
        if let Some(slot) = state.devices.get_mut(addr) {
            slot.queue.retain(|p| !(p.class == "message" && p.id == id));
        }
        tracing::debug!(device = ?addr, id, "resending a contact message after a retry receipt");
        let pending = Pending {
            class: "message",
            id: id.to_string(),
            receipt_type: None,
            body: PendingBody::Plain(sent),
        };
        self.push(view, &mut state, addr, pending).await;
    }
}

/// A retry receipt may carry fresh keys (identity, one prekey, signed
/// prekey): the session must start from exactly those.
fn apply_retry_keys(
    uploads: &mut std::collections::HashMap<DeviceAddr, super::hub::UploadedKeys>,
    addr: &DeviceAddr,
    receipt: &Node,
    keys: &Node,
) {
    let Some(identity) = child_bytes(keys, "identity").and_then(key_32) else {
        return;
    };
    let prekey = keys.get_optional_child("key").and_then(|k| {
        Some((
            id_from_bytes(child_bytes(k, "id")?)?,
            key_32(child_bytes(k, "value")?)?,
        ))
    });
    let signed = keys.get_optional_child("skey").and_then(|k| {
        Some((
            id_from_bytes(child_bytes(k, "id")?)?,
            key_32(child_bytes(k, "value")?)?,
            child_bytes(k, "signature")?.to_vec(),
        ))
    });
    let registration = child_bytes(receipt, "registration").and_then(id_from_bytes);
    let (Some((signed_id, signed_public, signed_signature)), Some(registration_id)) =
        (signed, registration)
    else {
        return;
    };
    let entry = uploads
        .entry(addr.clone())
        .or_insert_with(|| super::hub::UploadedKeys {
            registration_id,
            identity,
            signed_id,
            signed_public,
            signed_signature: signed_signature.clone(),
            prekeys: Default::default(),
        });
    if entry.identity != identity {
        entry.prekeys.clear();
    }
    entry.registration_id = registration_id;
    entry.identity = identity;
    entry.signed_id = signed_id;
    entry.signed_public = signed_public;
    entry.signed_signature = signed_signature;
    if let Some(key) = prekey {
        entry.prekeys.retain(|(id, _)| *id != key.0);
        entry.prekeys.push_front(key);
    }
}
