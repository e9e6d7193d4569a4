//! `iq xmlns="encrypt"`: prekey upload, count, fetch, digest, rotation.

use std::collections::VecDeque;

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use super::bundle::{child_bytes, id_from_bytes, id_to_3_bytes, key_32};
use super::directory::ServerView;
use super::hub::{DeviceAddr, Messaging, UploadedKeys};
use super::stanza::{attr, iq_error, iq_result, jid_attr};

impl Messaging {
    pub(super) async fn handle_encrypt_iq(
        &self,
        view: &dyn ServerView,
        device: &Jid,
        iq: &Node,
    ) -> Node {
        let device = &DeviceAddr::of(view, device);
        let first = iq
            .children()
            .and_then(|c| c.first())
            .map(|c| c.tag.to_string());
        match (attr(iq, "type").as_deref(), first.as_deref()) {
            (Some("get"), Some("count")) => self.prekey_count(device, iq).await,
            (Some("get"), Some("key")) => self.prekey_fetch(view, iq).await,
            (Some("get"), Some("digest")) => self.prekey_digest(device, iq).await,
            (Some("set"), Some("rotate")) => self.rotate_signed_prekey(device, iq).await,
            (Some("set"), _) if iq.get_optional_child("registration").is_some() => {
                self.prekey_upload(view, device, iq).await
            }
            _ => iq_error(iq, 501, "feature-not-implemented"),
        }
    }

    async fn prekey_count(&self, device: &DeviceAddr, iq: &Node) -> Node {
        let state = self.state.lock().await;
        let count = state.uploads.get(device).map_or(0, |k| k.prekeys.len());
        iq_result(
            iq,
            vec![
                NodeBuilder::new("count")
                    .attr("value", count.to_string())
                    .build(),
            ],
        )
    }

    async fn prekey_upload(&self, view: &dyn ServerView, device: &DeviceAddr, iq: &Node) -> Node {
        let Some(uploaded) = parse_upload(iq) else {
            tracing::warn!(device = ?device, "malformed prekey upload");
            return iq_error(iq, 400, "bad-request");
        };
        let addr = device.clone();
        let mut state = self.state.lock().await;
        let identity_changed = match state.uploads.get_mut(&addr) {
            Some(existing) if existing.identity == uploaded.identity => {
                existing.registration_id = uploaded.registration_id;
                existing.signed_id = uploaded.signed_id;
                existing.signed_public = uploaded.signed_public;
                existing.signed_signature = uploaded.signed_signature;
                for key in uploaded.prekeys {
                    existing.prekeys.retain(|(id, _)| *id != key.0);
                    existing.prekeys.push_back(key);
                }
                false
            }
            Some(_) => {
                state.uploads.insert(addr.clone(), uploaded);
                true
            }
            None => {
                state.uploads.insert(addr.clone(), uploaded);
                false
            }
        };
        if identity_changed {
            // A re-paired device: sessions with its old identity are useless.
            let peer = addr.signal_address();
            for contact in state.contacts.values_mut() {
                contact.forget_session(&peer);
            }
        }
        tracing::debug!(device = ?device, prekeys = state.uploads.get(&addr).map_or(0, |k| k.prekeys.len()), "prekeys uploaded");
        self.send_unencrypted(view, &mut state, &addr).await;
        iq_result(iq, Vec::new())
    }

    async fn prekey_fetch(&self, view: &dyn ServerView, iq: &Node) -> Node {
        let Some(key) = iq.get_optional_child("key") else {
            return iq_error(iq, 400, "bad-request");
        };
        let mut state = self.state.lock().await;
        let mut users = Vec::new();
        for user in key.get_children_by_tag("user") {
            let Some(jid) = jid_attr(user, "jid") else {
                continue;
            };
            let addr = DeviceAddr::of(view, &jid);
            let unknown_lid = jid.is_lid() && view.phone_of_lid(&jid.user).is_none();
            let bundle = if unknown_lid {
                None
            } else if jid.device == 0 {
                match state.contact(&addr.user) {
                    Ok(contact) => Some(contact.take_bundle()),
                    Err(e) => {
                        tracing::warn!(jid = %jid, error = %e, "no simulated device");
                        None
                    }
                }
            } else {
                state.uploads.get_mut(&addr).map(UploadedKeys::take_bundle)
            };
            users.push(match bundle {
                Some(bundle) => bundle.to_user_node(&jid),
                None => NodeBuilder::new("user")
                    .attr("jid", jid)
                    .children([NodeBuilder::new("error")
                        .attr("code", "406")
                        .attr("text", "not-acceptable")
                        .build()])
                    .build(),
            });
        }
        iq_result(iq, vec![NodeBuilder::new("list").children(users).build()])
    }

    async fn prekey_digest(&self, device: &DeviceAddr, iq: &Node) -> Node {
        let state = self.state.lock().await;
        let Some(keys) = state.uploads.get(device) else {
            return iq_error(iq, 404, "item-not-found");
        };
        let publics: Vec<&[u8]> = keys.prekeys.iter().map(|(_, k)| k.as_slice()).collect();
        let hash = wacore::prekeys::compute_key_bundle_digest(
            &keys.identity,
            &keys.signed_public,
            &keys.signed_signature,
            &publics,
        );
        let ids = keys
            .prekeys
            .iter()
            .map(|(id, _)| NodeBuilder::new("id").bytes(id_to_3_bytes(*id)).build());
        let digest = NodeBuilder::new("digest")
            .children([
                NodeBuilder::new("registration")
                    .bytes(keys.registration_id.to_be_bytes().to_vec())
                    .build(),
                NodeBuilder::new("type").bytes(vec![5u8]).build(),
                NodeBuilder::new("identity")
                    .bytes(keys.identity.to_vec())
                    .build(),
                signed_node(keys.signed_id, &keys.signed_public, &keys.signed_signature),
                NodeBuilder::new("list").children(ids).build(),
                NodeBuilder::new("hash").bytes(hash).build(),
            ])
            .build();
        iq_result(iq, vec![digest])
    }

    async fn rotate_signed_prekey(&self, device: &DeviceAddr, iq: &Node) -> Node {
        let Some((id, public, signature)) = iq
            .get_optional_child("rotate")
            .and_then(|r| r.get_optional_child("skey"))
            .and_then(parse_signed)
        else {
            return iq_error(iq, 400, "bad-request");
        };
        let mut state = self.state.lock().await;
        let Some(keys) = state.uploads.get_mut(device) else {
            return iq_error(iq, 404, "item-not-found");
        };
        keys.signed_id = id;
        keys.signed_public = public;
        keys.signed_signature = signature;
        iq_result(iq, Vec::new())
    }
}

fn signed_node(id: u32, public: &[u8; 32], signature: &[u8]) -> Node {
    NodeBuilder::new("skey")
        .children([
            NodeBuilder::new("id").bytes(id_to_3_bytes(id)).build(),
            NodeBuilder::new("value").bytes(public.to_vec()).build(),
            NodeBuilder::new("signature")
                .bytes(signature.to_vec())
                .build(),
        ])
        .build()
}

fn parse_signed(skey: &Node) -> Option<(u32, [u8; 32], Vec<u8>)> {
    Some((
        id_from_bytes(child_bytes(skey, "id")?)?,
        key_32(child_bytes(skey, "value")?)?,
        child_bytes(skey, "signature")?.to_vec(),
    ))
}

fn parse_upload(iq: &Node) -> Option<UploadedKeys> {
    let registration_id = id_from_bytes(child_bytes(iq, "registration")?)?;
    let identity = key_32(child_bytes(iq, "identity")?)?;
    let (signed_id, signed_public, signed_signature) =
        parse_signed(iq.get_optional_child("skey")?)?;
    let mut prekeys = VecDeque::new();
    if let Some(list) = iq.get_optional_child("list") {
        for key in list.get_children_by_tag("key") {
            let id = id_from_bytes(child_bytes(key, "id")?)?;
            let public = key_32(child_bytes(key, "value")?)?;
            prekeys.push_back((id, public));
        }
    }
    Some(UploadedKeys {
        registration_id,
        identity,
        signed_id,
        signed_public,
        signed_signature,
        prekeys,
    })
}
