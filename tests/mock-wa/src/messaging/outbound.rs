//! Contacts writing to accounts: text messages and receipts.

use std::collections::BTreeSet;

use wacore::messages::MessageUtils;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use super::MessagingError;
use super::directory::ServerView;
use super::hub::{
    Content, DeviceAddr, Messaging, Pending, PendingBody, ReceiptKind, SentText, State,
};
use super::media_msg::{MediaContent, MediaRequest, MediaRequestError};
use super::stanza::{new_message_id, now_secs, user_of};
use super::stats::Counters;

impl Messaging {
    /// Contact `from` sends `text` to every device of account `to` (phone
    /// number or JID). Devices that are offline get it when they connect;
    /// every device gets it again on each connect until it acks it.
    /// Returns the message id (`id` when given).
    pub async fn deliver(
        &self,
        view: &dyn ServerView,
        from: &str,
        to: &str,
        text: &str,
        id: Option<String>,
    ) -> Result<String, MessagingError> {
        let from_user = user_of(from).ok_or_else(|| MessagingError::BadAddress(from.into()))?;
        let to_user = user_of(to).ok_or_else(|| MessagingError::BadAddress(to.into()))?;
        if text.is_empty() {
            return Err(MessagingError::EmptyText);
        }
        self.deliver_content(
            view,
            from_user,
            to_user,
            Content::Text(text.to_string()),
            id,
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
    ) -> Result<String, MessagingError> {
        let from_user = user_of(from).ok_or_else(|| MessagingError::BadAddress(from.into()))?;
        let to_user = user_of(to).ok_or_else(|| MessagingError::BadAddress(to.into()))?;
        let store = view.media().ok_or(MediaRequestError::NoHost)?;
        let content = MediaContent::prepare(store, media)?;
        self.deliver_content(view, from_user, to_user, Content::Media(content), id)
            .await
    }

    async fn deliver_content(
        &self,
        view: &dyn ServerView,
        from_user: String,
        to_user: String,
        content: Content,
        id: Option<String>,
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
        for addr in &targets {
            let pending = Pending {
                class: "message",
                id: id.clone(),
                receipt_type: None,
                body: PendingBody::Plain {
                    from: from_user.clone(),
                    content: content.clone(),
                    time,
                },
            };
            self.push(view, &mut state, addr, pending).await;
        }
        Counters::bump(&self.counters.messages_delivered);
        Ok(id)
    }

    /// Contact `contact` sends a receipt for message `msg_id` to every device
    /// of `account`, queued like a message until each device acks it.
    pub async fn receipt(
        &self,
        view: &dyn ServerView,
        contact: &str,
        account: &str,
        msg_id: &str,
        kind: ReceiptKind,
    ) -> Result<(), MessagingError> {
        let contact_user =
            user_of(contact).ok_or_else(|| MessagingError::BadAddress(contact.into()))?;
        let account_user =
            user_of(account).ok_or_else(|| MessagingError::BadAddress(account.into()))?;
        let mut state = self.state.lock().await;
        let targets = account_devices(view, &state, &account_user);
        if targets.is_empty() {
            return Err(MessagingError::NoDevices(account_user));
        }
        let stanza = receipt_stanza(&contact_user, msg_id, kind);
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
        state: &mut State,
        from: &str,
        addr: &DeviceAddr,
        id: &str,
        content: &Content,
        time: u64,
    ) -> Result<Option<Node>, MessagingError> {
        let message = match content {
            Content::Text(text) => waproto::whatsapp::Message {
                conversation: Some(text.clone()),
                ..Default::default()
            },
            Content::KeyShare(keys) => super::key_share::key_share_message(keys),
            Content::Media(media) => media.to_message(),
            Content::Group(post) => {
                return self
                    .encrypt_group_post(state, from, addr, id, post, time)
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
        state.remember_sent(
            addr,
            id,
            SentText {
                from: from.to_string(),
                content: content.clone(),
                time,
            },
        );
        let media_type = match content {
            Content::Media(media) => Some(media.kind.as_str()),
            _ => None,
        };
        let mut stanza = NodeBuilder::new("message")
            .attr("from", Jid::pn(from))
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

pub(super) fn receipt_stanza(contact_user: &str, msg_id: &str, kind: ReceiptKind) -> Node {
    let mut b = NodeBuilder::new("receipt")
        .attr("from", Jid::pn(contact_user))
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
