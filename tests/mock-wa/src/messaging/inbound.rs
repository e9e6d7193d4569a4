//! Accounts writing to contacts: decrypt the contact's copy, record it, ack.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, JidExt as _, Node, NodeContent};

use super::MessagingError;
use super::addressing::Addressing;
use super::directory::ServerView;
use super::hub::{DeviceAddr, InboxEntry, Messaging, Pending, PendingBody, ReceiptKind, State};
use super::outbound::{receipt_pending, receipt_stanza};
use super::sim_device::EncKind;
use super::stanza::{attr, jid_attr, now_secs};
use super::stats::Counters;

impl Messaging {
    /// A `<message>` from logged-in `device`. Returns what to write back on
    /// that connection, in order: the server ack (what the client waits for)
    /// and, when enabled, the contacts' delivery receipts.
    pub async fn handle_message(
        &self,
        view: &dyn ServerView,
        device: &Jid,
        message: &Node,
    ) -> Vec<Node> {
        let Some(id) = attr(message, "id") else {
            tracing::warn!(device = %device, "client sent a <message> without id; ignored");
            return Vec::new();
        };
        let chat = jid_attr(message, "to");
        let time = attr(message, "t")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(now_secs);
        if let Some(group) = chat.as_ref().filter(|c| c.is_group()) {
            return self
                .handle_group_message(view, device, message, group, &id, time)
                .await;
        }
        let sender = DeviceAddr::of(view, device);
        let mut replies = Vec::new();
        let mut state = self.state.lock().await;
        for (recipient, enc) in copies(message, chat.as_ref()) {
            if recipient.is_lid() && view.phone_of_lid(&recipient.user).is_none() {
                tracing::warn!(to = %recipient, id = %id, "copy for a LID the server never handed out; acked and dropped");
                continue;
            }
            let target = DeviceAddr::of(view, &recipient);
            if target == sender {
                // The server never echoes a message to the device that sent it.
                continue;
            }
            let own = target.user == sender.user;
            if own {
                Counters::bump(&self.counters.own_device_copies);
            }
            let addressing = Addressing::of(&recipient);
            if recipient.device != 0 {
                let from = addressing.sender_attrs(
                    NodeBuilder::new("message"),
                    view,
                    &sender.user,
                    sender.device,
                );
                let forward =
                    forwarded_copy(from, message, enc, own.then_some(chat.as_ref()).flatten());
                if is_known_device(view, &state, &target) {
                    let pending = Pending {
                        class: "message",
                        id: id.clone(),
                        receipt_type: None,
                        body: PendingBody::Stanza(forward),
                    };
                    self.push(view, &mut state, &target, pending).await;
                } else {
                    tracing::debug!(to = %recipient, "copy for an unknown companion device dropped");
                }
                continue;
            }
            if own {
                // The account's own phone is simulated and reads nothing.
                continue;
            }
            let contact = target.user.clone();
            let contact_jid = recipient.to_non_ad();
            match decrypt_copy(&mut state, &sender, &contact, enc).await {
                Ok(decoded) => {
                    let media = super::media_msg::summarize(view.media(), &decoded);
                    let text = text_of(&decoded);
                    if !state.inbox_ids.insert((contact.clone(), id.clone())) {
                        Counters::bump(&self.counters.messages_duplicate);
                        continue;
                    }
                    Counters::bump(&self.counters.messages_received);
                    tracing::debug!(contact = %contact, id = %id, text = %text, "contact received a message");
                    state
                        .inbox
                        .entry(contact.clone())
                        .or_default()
                        .push(InboxEntry {
                            id: id.clone(),
                            from: Jid::pn(sender.user.as_str()).to_string(),
                            to: contact_jid.to_string(),
                            addressing,
                            text,
                            time,
                            media,
                        });
                    if self.config.auto_delivery_receipts {
                        let stanza =
                            receipt_stanza(contact_jid.clone(), &id, ReceiptKind::Delivery);
                        Self::enqueue(
                            &mut state,
                            &sender,
                            receipt_pending(&id, ReceiptKind::Delivery, stanza.clone()),
                        );
                        Counters::bump(&self.counters.receipts_sent);
                        replies.push(stanza);
                    }
                }
                Err(e) => {
                    Counters::bump(&self.counters.decrypt_failures);
                    tracing::warn!(device = %device, to = %recipient, id = %id, error = %e, "could not decrypt the contact's copy; acking it, and the contact asks for a retry");
                    match self.retry_receipt(&mut state, &sender, &contact, contact_jid, &id) {
                        Ok(Some(stanza)) => replies.push(stanza),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(device = %device, id = %id, error = %e, "cannot build a retry receipt")
                        }
                    }
                }
            }
        }
        drop(state);
        let mut ack = NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id)
            .attr("t", now_secs().to_string());
        if let Some(chat) = chat {
            ack = ack.attr("from", chat);
        }
        Counters::bump(&self.counters.messages_acked);
        replies.insert(0, ack.build());
        replies
    }
}

/// A client gives up after this many retries of one message (WA Web's cap).
const MAX_RETRIES: u8 = 5;

impl Messaging {
    /// What the contact's phone does when it cannot decrypt: drop the session
    /// with the sender and send a retry receipt carrying a fresh bundle, so
    /// the client starts a new session and sends the message again.
    fn retry_receipt(
        &self,
        state: &mut State,
        sender: &DeviceAddr,
        contact: &str,
        contact_jid: Jid,
        id: &str,
    ) -> Result<Option<Node>, MessagingError> {
        let count = state
            .retries
            .entry((contact.to_string(), id.to_string()))
            .or_insert(0);
        *count += 1;
        let count = *count;
        if count >= MAX_RETRIES {
            return Ok(None);
        }
        let device = state.contact(contact)?;
        device.forget_session(&sender.signal_address());
        let bundle = device.take_bundle();
        let stanza = NodeBuilder::new("receipt")
            .attr("from", contact_jid)
            .attr("id", id)
            .attr("type", "retry")
            .attr("t", now_secs().to_string())
            .children([
                NodeBuilder::new("retry")
                    .attr("v", "1")
                    .attr("id", id)
                    .attr("count", count.to_string())
                    .attr("t", now_secs().to_string())
                    .build(),
                NodeBuilder::new("registration")
                    .bytes(bundle.registration_id.to_be_bytes().to_vec())
                    .build(),
                bundle.to_keys_node(),
            ])
            .build();
        Self::enqueue(
            state,
            sender,
            Pending {
                class: "receipt",
                id: id.to_string(),
                receipt_type: Some("retry"),
                body: PendingBody::Stanza(stanza.clone()),
            },
        );
        Ok(Some(stanza))
    }
}

/// The stanza a companion device gets for its copy: `from` names the
/// sending device (in the addressing the copy was sent in), with the sender's
/// `<device-identity>` (a `pkmsg` from a companion is checked against it); a
/// copy for the sender's own other devices names the chat in `recipient`.
fn forwarded_copy(from: NodeBuilder, message: &Node, enc: &Node, own_chat: Option<&Jid>) -> Node {
    let mut b = from.attr("t", now_secs().to_string());
    for key in ["id", "type"] {
        if let Some(value) = attr(message, key) {
            b = b.attr(key, value);
        }
    }
    if let Some(chat) = own_chat {
        b = b.attr("recipient", chat.clone());
    }
    let mut children = vec![enc.clone()];
    if let Some(identity) = message.get_optional_child("device-identity") {
        children.push(identity.clone());
    }
    b.children(children).build()
}

fn is_known_device(view: &dyn ServerView, state: &State, addr: &DeviceAddr) -> bool {
    state.uploads.contains_key(addr)
        || view
            .account(&addr.user)
            .is_some_and(|a| a.companions.iter().any(|c| c.device == addr.device))
}

/// Each `(recipient device, <enc>)` of a message: the `<participants>`
/// fan-out, or `<enc>` straight under the message for the chat itself.
fn copies<'a>(message: &'a Node, chat: Option<&Jid>) -> Vec<(Jid, &'a Node)> {
    let mut out = Vec::new();
    if let Some(participants) = message.get_optional_child("participants") {
        for to in participants.get_children_by_tag("to") {
            if let Some(jid) = jid_attr(to, "jid") {
                out.extend(to.get_children_by_tag("enc").map(|enc| (jid.clone(), enc)));
            }
        }
    }
    if let Some(chat) = chat {
        out.extend(
            message
                .get_children_by_tag("enc")
                .map(|enc| (chat.clone(), enc)),
        );
    }
    out
}

pub(super) async fn decrypt_copy(
    state: &mut State,
    sender: &DeviceAddr,
    contact: &str,
    enc: &Node,
) -> Result<waproto::whatsapp::Message, MessagingError> {
    let enc_type = attr(enc, "type").unwrap_or_default();
    let kind = EncKind::parse(&enc_type).ok_or_else(|| {
        MessagingError::BadPlaintext(format!("enc type {enc_type:?} is not a 1:1 Signal message"))
    })?;
    let Some(NodeContent::Bytes(ciphertext)) = &enc.content else {
        return Err(MessagingError::BadPlaintext(
            "<enc> carries no bytes".into(),
        ));
    };
    let padded = state
        .contact(contact)?
        .decrypt(&sender.signal_address(), kind, ciphertext)
        .await?;
    let version = attr(enc, "v").and_then(|v| v.parse().ok()).unwrap_or(2);
    wacore::messages::decode_plaintext(&padded, version)
        .map_err(|e| MessagingError::BadPlaintext(e.to_string()))
}

pub(super) fn text_of(message: &waproto::whatsapp::Message) -> String {
    if let Some(text) = &message.conversation {
        return text.clone();
    }
    if let Some(m) = message.extended_text_message.as_option()
        && let Some(text) = m.text.clone()
    {
        // A reply says what it answers, so a test can see the quote arrived.
        return match m
            .context_info
            .as_option()
            .and_then(|c| c.stanza_id.as_deref())
        {
            Some(quoted) => format!("[reply to {quoted}] {text}"),
            None => text,
        };
    }
    if let Some(r) = message.reaction_message.as_option() {
        let target = r
            .key
            .as_option()
            .and_then(|k| k.id.as_deref())
            .unwrap_or("?");
        return format!("[reaction {} to {target}]", r.text.as_deref().unwrap_or(""));
    }
    if let Some(m) = message.image_message.as_option() {
        return m.caption.clone().unwrap_or_else(|| "[image]".into());
    }
    if let Some(m) = message.video_message.as_option() {
        return m.caption.clone().unwrap_or_else(|| "[video]".into());
    }
    if let Some(m) = message.audio_message.as_option() {
        return if m.ptt == Some(true) {
            "[voice]".into()
        } else {
            "[audio]".into()
        };
    }
    if let Some(m) = message.document_message.as_option() {
        return m.caption.clone().unwrap_or_else(|| "[document]".into());
    }
    "[non-text message]".to_string()
}
