//! Contacts writing to accounts: text messages and receipts.

use std::collections::BTreeSet;

use wacore::messages::MessageUtils;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use super::MessagingError;
use super::addressing::Addressing;
use super::directory::ServerView;
use super::hub::{
    Content, DeviceAddr, Messaging, Pending, PendingBody, ReceiptKind, SentText, State,
};
use super::media_msg::{MediaContent, MediaRequest, MediaRequestError};
use super::stanza::{new_message_id, now_secs, user_of};
use super::stats::Counters;

impl Messaging {
    /// Contact `from` sends `text` to every device of account `to` (phone
    /// number or JID), naming itself as `addressing` says. Devices that are
    /// offline get it when they connect; every device gets it again on each
    /// connect until it acks it. Returns the message id (`id` when given).
    pub async fn deliver(
        &self,
        view: &dyn ServerView,
        from: &str,
        to: &str,
        text: &str,
        id: Option<String>,
        addressing: Addressing,
    ) -> Result<String, MessagingError> {
        let from_user = phone_of(view, from)?;
        let to_user = phone_of(view, to)?;
        if text.is_empty() {
            return Err(MessagingError::EmptyText);
        }
        self.deliver_content(
            view,
            from_user,
            to_user,
            Content::Text(text.to_string()),
            id,
            addressing,
        )
        .await
    }

    /// Contact `from` sends `message` as it is (a reply, a reaction, an
    /// edit, a deletion for everyone) to account `to`; returns its id.
    pub async fn deliver_message(
        &self,
        view: &dyn ServerView,
        from: &str,
        to: &str,
        message: waproto::whatsapp::Message,
        id: Option<String>,
        addressing: Addressing,
    ) -> Result<String, MessagingError> {
        let from_user = phone_of(view, from)?;
        let to_user = phone_of(view, to)?;
        self.deliver_content(
            view,
            from_user,
            to_user,
            Content::Message(std::sync::Arc::new(message)),
            id,
            addressing,
        )
        .await
    }

    /// Contact `from` sends an image or a document to account `to`: the file
    /// is encrypted with a fresh media key and stored on the media host, and
    /// the message carries the key and the blob's references.
    pub async fn deliver_media(
        &self,
        view: &dyn ServerView,
        from: &str,
        to: &str,
        media: &MediaRequest,
        id: Option<String>,
        addressing: Addressing,
    ) -> Result<String, MessagingError> {
        let from_user = phone_of(view, from)?;
        let to_user = phone_of(view, to)?;
        let store = view.media().ok_or(MediaRequestError::NoHost)?;
        let content = MediaContent::prepare(store, media)?;
        self.deliver_content(
            view,
            from_user,
            to_user,
            Content::Media(content),
            id,
            addressing,
        )
        .await
    }

    async fn deliver_content(
        &self,
        view: &dyn ServerView,
        from_user: String,
        to_user: String,
        content: Content,
        id: Option<String>,
        addressing: Addressing,
    ) -> Result<String, MessagingError> {
        let id = id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(new_message_id);
        let time = now_secs();
        let mut state = self.state.lock().await;
        let targets = account_devices(view, &state, &to_user);
        if targets.is_empty() {
            return Err(MessagingError::NoDevices(to_user));
        }
        state.contact(&from_user)?;
        let sent = SentText {
            from: from_user,
            content,
            time,
            addressing,
        };
        self.push_to_devices(view, &mut state, &targets, &id, sent)
            .await;
        Counters::bump(&self.counters.messages_delivered);
        Ok(id)
    }

    /// Queues what a contact wrote for each of `targets` under message id
    /// `id`, writing it out at once to those online.
    pub(super) async fn push_to_devices(
        &self,
        view: &dyn ServerView,
        state: &mut State,
        targets: &BTreeSet<DeviceAddr>,
        id: &str,
        sent: SentText,
    ) {
        for addr in targets {
            let pending = Pending {
                class: "message",
                id: id.to_string(),
                receipt_type: None,
                body: PendingBody::Plain(sent.clone()),
            };
            self.push(view, state, addr, pending).await;
        }
    }

    /// Contact `contact` sends a receipt for message `msg_id` to every device
    /// of `account`, queued like a message until each device acks it; from
    /// the address the message went to unless `from` says which.
    pub async fn receipt(
        &self,
        view: &dyn ServerView,
        contact: &str,
        account: &str,
        msg_id: &str,
        kind: ReceiptKind,
        from: Option<Addressing>,
    ) -> Result<(), MessagingError> {
        let contact_user = phone_of(view, contact)?;
        let account_user = phone_of(view, account)?;
        let mut state = self.state.lock().await;
        let targets = account_devices(view, &state, &account_user);
        if targets.is_empty() {
            return Err(MessagingError::NoDevices(account_user));
        }
        // From the address the client wrote to, as the real server sends it.
        let addressing = from.unwrap_or_else(|| {
            state
                .inbox
                .get(&contact_user)
                .and_then(|entries| entries.iter().rev().find(|e| e.id == msg_id))
                .map_or(Addressing::default(), |e| e.addressing)
        });
        let stanza = receipt_stanza(addressing.jid(view, &contact_user, 0), msg_id, kind);
        for addr in &targets {
            let pending = receipt_pending(msg_id, kind, stanza.clone());
            self.push(view, &mut state, addr, pending).await;
        }
        Counters::bump(&self.counters.receipts_sent);
        Ok(())
    }

    /// The `<message>` contact `from` sends to device `addr`, or `None`
    /// while there is neither a session with the device nor keys it uploaded.
    pub(super) async fn encrypt_for_device(
        &self,
        view: &dyn ServerView,
        state: &mut State,
        addr: &DeviceAddr,
        id: &str,
        sent: &SentText,
    ) -> Result<Option<Node>, MessagingError> {
        let (from, content, time) = (sent.from.as_str(), &sent.content, sent.time);
        let message = match content {
            Content::Text(text) => waproto::whatsapp::Message {
                conversation: Some(text.clone()),
                ..Default::default()
            },
            Content::KeyShare(keys) => super::key_share::key_share_message(keys),
            Content::Media(media) => media.to_message(),
            Content::Message(message) => (**message).clone(),
            Content::Group(post) => {
                return self
                    .encrypt_group_post(view, state, addr, id, sent, post)
                    .await;
            }
        };
        let peer = addr.signal_address();
        let has_session = state.contact(from)?.has_session(&peer).await;
        let bundle = if has_session {
            None
        } else {
            match state.uploads.get_mut(addr) {
                Some(keys) => Some(keys.take_bundle()),
                None => return Ok(None),
            }
        };
        let plaintext = MessageUtils::encode_and_pad(&message);
        let (kind, ciphertext) = state
            .contact(from)?
            .encrypt(&peer, bundle.as_ref(), &plaintext)
            .await?;
        let media_type = match content {
            Content::Media(media) => Some(media.kind.stanza_mediatype()),
            _ => None,
        };
        state.remember_sent(addr, id, sent.clone());
        let mut stanza = sent
            .addressing
            .sender_attrs(NodeBuilder::new("message"), view, from, 0)
            .attr("id", id)
            .attr(
                "type",
                if media_type.is_some() {
                    "media"
                } else {
                    "text"
                },
            )
            .attr("t", time.to_string());
        if !matches!(content, Content::KeyShare(_)) {
            // The push name the contact set, as the server relays it.
            stanza = stanza.attr("notify", super::addressing::push_name(from));
        }
        if matches!(content, Content::KeyShare(_)) {
            // From the account's own phone to its companion: a peer message,
            // which the client acknowledges with a `peer_msg` receipt.
            stanza = stanza.attr("category", "peer");
        }
        let mut enc = NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", kind.as_str());
        if let Some(media_type) = media_type {
            enc = enc.attr("mediatype", media_type);
        }
        Ok(Some(
            stanza.children([enc.bytes(ciphertext).build()]).build(),
        ))
    }
}

/// A receipt for `msg_id` from `from`: the address the message went to.
pub(super) fn receipt_stanza(from: Jid, msg_id: &str, kind: ReceiptKind) -> Node {
    let mut b = NodeBuilder::new("receipt")
        .attr("from", from)
        .attr("id", msg_id)
        .attr("t", now_secs().to_string());
    if let Some(t) = kind.wire_type() {
        b = b.attr("type", t);
    }
    b.build()
}

pub(super) fn receipt_pending(msg_id: &str, kind: ReceiptKind, stanza: Node) -> Pending {
    Pending {
        class: "receipt",
        id: msg_id.to_string(),
        receipt_type: kind.wire_type(),
        body: PendingBody::Stanza(stanza),
    }
}

/// The companion devices of account `phone` that can receive: those the
/// core's registry knows, and any that uploaded keys.
pub(super) fn account_devices(
    view: &dyn ServerView,
    state: &State,
    phone: &str,
) -> BTreeSet<DeviceAddr> {
    let mut targets = BTreeSet::new();
    if let Some(account) = view.account(phone) {
        targets.extend(account.companions.iter().map(|c| DeviceAddr {
            user: phone.to_string(),
            device: c.device,
        }));
    }
    targets.extend(
        state
            .uploads
            .keys()
            .filter(|a| a.user == phone && a.device != 0)
            .cloned(),
    );
    targets
}

/// The phone number `address` names: digits, a phone-number JID, or a LID
/// JID the server handed out.
pub(super) fn phone_of(view: &dyn ServerView, address: &str) -> Result<String, MessagingError> {
    let bad = || MessagingError::BadAddress(address.into());
    match address.trim().parse::<Jid>() {
        Ok(jid) if jid.is_lid() => view.phone_of_lid(&jid.user).ok_or_else(bad),
        _ => user_of(address).ok_or_else(bad),
    }
}
