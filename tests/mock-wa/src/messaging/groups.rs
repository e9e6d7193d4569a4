//! Groups: the admin creates one of contacts and an account; group metadata
//! IQs (`w:g2`) answer with its participants; sender keys go both ways.
//!
//! A client posting to a group sends its sender-key distribution message to
//! each member device over pairwise Signal (`<participants><to>`) and the
//! post once as `skmsg`; every member contact takes in the key and decrypts
//! the post, which is recorded once per group. A contact posting sends each
//! companion of the account its own distribution message (pairwise, until
//! that device has it) next to the `skmsg`, from the group with
//! `participant` naming the contact.

use std::sync::Arc;

use wacore::messages::MessageUtils;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, NodeContent};
use waproto::whatsapp as wa;

use super::MessagingError;
use super::addressing::Addressing;
use super::directory::ServerView;
use super::hub::{
    Content, DeviceAddr, InboxEntry, Messaging, Pending, PendingBody, ReceiptKind, SentText, State,
};
use super::media_msg::{MediaContent, MediaRequest, MediaRequestError};
use super::outbound::account_devices;
use super::stanza::{attr, jid_attr, new_message_id, now_secs, user_of};
use super::stats::Counters;
use crate::handlers::{iq_error, iq_result};

/// Group ids the real server hands out: `120363` and twelve more digits.
const GROUP_ID_BASE: u64 = 120_363_000_000_000_000;

/// A group the admin created.
#[derive(Clone, Debug)]
pub struct Group {
    /// The user part of the group JID.
    pub id: String,
    pub subject: String,
    /// Phone numbers, the creator (first contact) first, the account last.
    pub members: Vec<String>,
    /// The account's phone number.
    pub account: String,
    pub creation: u64,
}

impl Group {
    pub fn jid(&self) -> Jid {
        Jid::group(self.id.as_str())
    }

    fn contacts(&self) -> impl Iterator<Item = &String> {
        self.members.iter().filter(|m| **m != self.account)
    }

    /// `<group>` as the `w:g2` query answers it: LID-addressed, as groups
    /// are on the real network, each participant's phone number beside its
    /// LID.
    fn to_node(&self, view: &dyn ServerView) -> Node {
        let lid = |phone: &str| Jid::lid(view.lid_of(phone));
        let participants = self.members.iter().enumerate().map(|(i, phone)| {
            let mut p = NodeBuilder::new("participant")
                .attr("jid", lid(phone))
                .attr("phone_number", Jid::pn(phone.as_str()));
            if i == 0 {
                p = p.attr("type", "superadmin");
            }
            p.build()
        });
        let creator = self.members[0].as_str();
        NodeBuilder::new("group")
            .attr("id", self.id.clone())
            .attr("subject", self.subject.clone())
            .attr("s_t", self.creation.to_string())
            .attr("s_o", lid(creator))
            .attr("s_o_pn", Jid::pn(creator))
            .attr("creation", self.creation.to_string())
            .attr("creator", lid(creator))
            .attr("creator_pn", Jid::pn(creator))
            .attr("addressing_mode", "lid")
            .attr("size", self.members.len().to_string())
            .children(participants)
            .build()
    }
}

/// A contact's post, encrypted once under its sender key for every device.
#[derive(Debug)]
pub struct GroupPost {
    pub group: Jid,
    /// The contact's serialized `SenderKeyDistributionMessage` for the group.
    pub skdm: Vec<u8>,
    pub skmsg: Vec<u8>,
    /// `mediatype` of the `skmsg` `<enc>`, for media posts.
    pub media_type: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("group subject is empty; give a subject")]
    NoSubject,
    #[error("a group needs at least one member contact besides the account")]
    NoMembers,
    #[error("{0:?} is not a known account; pair a device first and pass its JID as with_account")]
    NotAnAccount(String),
    #[error("group {0} does not exist; create it with POST /admin/groups")]
    Unknown(String),
    #[error("{member} is not a member of group {group}")]
    NotAMember { member: String, group: String },
}

impl Messaging {
    /// Creates a group of `members` (contacts' phone numbers) and the account
    /// `with_account`; returns its JID.
    pub async fn create_group(
        &self,
        view: &dyn ServerView,
        subject: &str,
        members: &[String],
        with_account: &str,
    ) -> Result<String, MessagingError> {
        if subject.trim().is_empty() {
            return Err(GroupError::NoSubject.into());
        }
        let account = user_of(with_account)
            .filter(|a| view.account(a).is_some())
            .ok_or_else(|| GroupError::NotAnAccount(with_account.to_string()))?;
        let mut phones = Vec::new();
        for member in members {
            let phone =
                user_of(member).ok_or_else(|| MessagingError::BadAddress(member.clone()))?;
            if phone != account && !phones.contains(&phone) {
                phones.push(phone);
            }
        }
        if phones.is_empty() {
            return Err(GroupError::NoMembers.into());
        }
        phones.push(account.clone());
        let mut state = self.state.lock().await;
        state.next_group += 1;
        let group = Group {
            id: (GROUP_ID_BASE + state.next_group).to_string(),
            subject: subject.to_string(),
            members: phones,
            account,
            creation: now_secs(),
        };
        for contact in group.contacts() {
            state.contact(contact)?;
        }
        let jid = group.jid().to_string();
        state.groups.insert(group.id.clone(), group);
        Ok(jid)
    }

    /// What the client members of group `group` posted, oldest first.
    pub async fn group_inbox(&self, group: &str) -> Vec<InboxEntry> {
        let Some(id) = user_of(group) else {
            return Vec::new();
        };
        self.state
            .lock()
            .await
            .group_inbox
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Answers a `w:g2` IQ: the group's metadata for a `<query>` to it, the
    /// account's groups for `<participating>`; other group actions are not
    /// modelled.
    pub async fn group_iq(&self, view: &dyn ServerView, device: &Jid, iq: &Node) -> Node {
        let state = self.state.lock().await;
        if iq.get_optional_child("participating").is_some() {
            let groups = state
                .groups
                .values()
                .filter(|g| g.account == *device.user)
                .map(|g| g.to_node(view));
            return iq_result(
                iq,
                vec![NodeBuilder::new("groups").children(groups).build()],
            );
        }
        if iq.get_optional_child("query").is_none() {
            return iq_error(iq, 501, "feature-not-implemented");
        }
        let group = jid_attr(iq, "to").and_then(|to| state.groups.get(&*to.user).cloned());
        match group {
            Some(g) if g.account == *device.user => iq_result(iq, vec![g.to_node(view)]),
            Some(_) => iq_error(iq, 403, "forbidden"),
            None => iq_error(iq, 404, "item-not-found"),
        }
    }

    /// Contact `from` posts `text`, or `media` with `text` as fallback
    /// caption, to group `group`; every companion of the group's account
    /// gets it. Returns the message id.
    pub async fn post_to_group(
        &self,
        view: &dyn ServerView,
        from: &str,
        group: &str,
        text: &str,
        media: Option<&MediaRequest>,
        id: Option<String>,
    ) -> Result<String, MessagingError> {
        let from_user = user_of(from).ok_or_else(|| MessagingError::BadAddress(from.into()))?;
        let (message, media_type) = match media {
            Some(media) => {
                let store = view.media().ok_or(MediaRequestError::NoHost)?;
                let content = MediaContent::prepare(store, media)?;
                (content.to_message(), Some(content.kind.stanza_mediatype()))
            }
            None if text.is_empty() => return Err(MessagingError::EmptyText),
            None => (
                wa::Message {
                    conversation: Some(text.to_string()),
                    ..Default::default()
                },
                None,
            ),
        };
        self.deliver_to_group(view, &from_user, group, message, media_type, id)
            .await
    }

    async fn deliver_to_group(
        &self,
        view: &dyn ServerView,
        from_user: &str,
        group: &str,
        message: wa::Message,
        media_type: Option<&'static str>,
        id: Option<String>,
    ) -> Result<String, MessagingError> {
        let group_id = user_of(group).ok_or_else(|| GroupError::Unknown(group.to_string()))?;
        let mut state = self.state.lock().await;
        let group = state
            .groups
            .get(&group_id)
            .cloned()
            .ok_or_else(|| GroupError::Unknown(group.to_string()))?;
        if !group.contacts().any(|c| c == from_user) {
            return Err(GroupError::NotAMember {
                member: from_user.to_string(),
                group: group.jid().to_string(),
            }
            .into());
        }
        let targets = account_devices(view, &state, &group.account);
        if targets.is_empty() {
            return Err(MessagingError::NoDevices(group.account.clone()));
        }
        let group_jid = group.jid();
        let contact = state.contact(from_user)?;
        let skdm = contact
            .sender_key_distribution(&group_jid.to_string())
            .await?;
        let skmsg = contact
            .group_encrypt(
                &group_jid.to_string(),
                &MessageUtils::encode_and_pad(&message),
            )
            .await?;
        let post = Arc::new(GroupPost {
            group: group_jid,
            skdm,
            skmsg,
            media_type,
        });
        let id = id.filter(|i| !i.is_empty()).unwrap_or_else(new_message_id);
        let time = now_secs();
        let sent = SentText {
            from: from_user.to_string(),
            content: Content::Group(post),
            time,
            addressing: Addressing::Lid,
        };
        self.push_to_devices(view, &mut state, &targets, &id, sent)
            .await;
        Counters::bump(&self.counters.messages_delivered);
        Ok(id)
    }

    /// Member `contact` sends a receipt for the client's post `msg_id` in
    /// `group` to every device of the group's account:
    /// `<receipt from=GROUP participant=MEMBER_LID [type="read"]>`.
    pub async fn group_receipt(
        &self,
        view: &dyn ServerView,
        contact: &str,
        group: &str,
        msg_id: &str,
        kind: ReceiptKind,
    ) -> Result<(), MessagingError> {
        let contact = user_of(contact).ok_or_else(|| MessagingError::BadAddress(contact.into()))?;
        let mut state = self.state.lock().await;
        let group = user_of(group)
            .and_then(|id| state.groups.get(&id).cloned())
            .ok_or_else(|| GroupError::Unknown(group.to_string()))?;
        if !group.contacts().any(|c| *c == contact) {
            return Err(GroupError::NotAMember {
                member: contact,
                group: group.jid().to_string(),
            }
            .into());
        }
        let stanza = group_receipt_stanza(view, &group, &contact, msg_id, kind);
        for addr in &account_devices(view, &state, &group.account) {
            let pending = super::outbound::receipt_pending(msg_id, kind, stanza.clone());
            self.push(view, &mut state, addr, pending).await;
        }
        Counters::bump(&self.counters.receipts_sent);
        Ok(())
    }

    /// The stanza of a group post for device `addr`: the contact's sender
    /// key goes with it over the pairwise session until the device has it
    /// (again after a retry, which drops that session).
    pub(super) async fn encrypt_group_post(
        &self,
        view: &dyn ServerView,
        state: &mut State,
        addr: &DeviceAddr,
        id: &str,
        sent: &SentText,
        post: &Arc<GroupPost>,
    ) -> Result<Option<Node>, MessagingError> {
        let (from, time) = (sent.from.as_str(), sent.time);
        let peer = addr.signal_address();
        let group = post.group.to_string();
        let key = (group.clone(), from.to_string(), addr.clone());
        let has_session = state.contact(from)?.has_session(&peer).await;
        let mut children = Vec::new();
        if !has_session || !state.skdm_sent.contains(&key) {
            let bundle = if has_session {
                None
            } else {
                match state.uploads.get_mut(addr) {
                    Some(keys) => Some(keys.take_bundle()),
                    None => return Ok(None),
                }
            };
            let wrapper = wa::Message {
                sender_key_distribution_message: buffa::MessageField::some(
                    wa::message::SenderKeyDistributionMessage {
                        group_id: Some(group.clone()),
                        axolotl_sender_key_distribution_message: Some(post.skdm.clone()),
                    },
                ),
                ..Default::default()
            };
            let (kind, ciphertext) = state
                .contact(from)?
                .encrypt(
                    &peer,
                    bundle.as_ref(),
                    &MessageUtils::encode_and_pad(&wrapper),
                )
                .await?;
            state.skdm_sent.insert(key);
            children.push(
                NodeBuilder::new("enc")
                    .attr("v", "2")
                    .attr("type", kind.as_str())
                    .bytes(ciphertext)
                    .build(),
            );
        }
        let mut skmsg = NodeBuilder::new("enc").attr("v", "2").attr("type", "skmsg");
        if let Some(media_type) = post.media_type {
            skmsg = skmsg.attr("mediatype", media_type);
        }
        children.push(skmsg.bytes(post.skmsg.clone()).build());
        state.remember_sent(addr, id, sent.clone());
        Ok(Some(
            NodeBuilder::new("message")
                .attr("from", post.group.clone())
                .attr("participant", Jid::lid(view.lid_of(from)))
                .attr("participant_pn", Jid::pn(from))
                .attr("addressing_mode", "lid")
                .attr("notify", super::addressing::push_name(from))
                .attr("id", id)
                .attr(
                    "type",
                    if post.media_type.is_some() {
                        "media"
                    } else {
                        "text"
                    },
                )
                .attr("t", time.to_string())
                .children(children)
                .build(),
        ))
    }

    /// A client's post to group `chat`: member contacts take in the
    /// distributed sender key from their pairwise copies, decrypt the
    /// `skmsg`, and the post is recorded once; each member that read it
    /// sends a delivery receipt. Copies for the sender's other companions
    /// are forwarded from the group.
    pub(super) async fn handle_group_message(
        &self,
        view: &dyn ServerView,
        device: &Jid,
        message: &Node,
        chat: &Jid,
        id: &str,
        time: u64,
    ) -> Vec<Node> {
        let sender = DeviceAddr::of(view, device);
        let sender_address = sender.signal_address();
        let group_name = chat.to_string();
        let mut replies = Vec::new();
        let mut state = self.state.lock().await;
        let Some(group) = state.groups.get(&*chat.user).cloned() else {
            tracing::warn!(device = %device, group = %chat, "post to a group the mock does not know; acked and dropped");
            return vec![group_ack(id, chat)];
        };
        let skmsg = message
            .get_children_by_tag("enc")
            .find(|e| attr(e, "type").as_deref() == Some("skmsg"));
        if let Some(participants) = message.get_optional_child("participants") {
            for to in participants.get_children_by_tag("to") {
                let (Some(recipient), Some(enc)) =
                    (jid_attr(to, "jid"), to.get_optional_child("enc"))
                else {
                    continue;
                };
                let target = DeviceAddr::of(view, &recipient);
                if target == sender {
                    // Some clients list their own device; the server never
                    // echoes a message to the device that sent it.
                    continue;
                }
                if target.user == sender.user {
                    Counters::bump(&self.counters.own_device_copies);
                    if recipient.device != 0 {
                        let participant = Jid::lid_device(view.lid_of(&sender.user), sender.device);
                        let forward =
                            forwarded_group_copy(message, enc, skmsg, &participant, device, chat);
                        let pending = Pending {
                            class: "message",
                            id: id.to_string(),
                            receipt_type: None,
                            body: PendingBody::Stanza(forward),
                        };
                        self.push(view, &mut state, &target, pending).await;
                    }
                    continue;
                }
                if recipient.device != 0 || !group.members.contains(&target.user) {
                    continue;
                }
                match super::inbound::decrypt_copy(&mut state, &sender, &target.user, enc).await {
                    Ok(decoded) => {
                        let skdm = decoded
                            .sender_key_distribution_message
                            .as_option()
                            .and_then(|s| s.axolotl_sender_key_distribution_message.clone());
                        if let Some(skdm) = skdm
                            && let Err(e) = async {
                                state
                                    .contact(&target.user)?
                                    .accept_sender_key(&group_name, &sender_address, &skdm)
                                    .await
                            }
                            .await
                        {
                            tracing::warn!(contact = %target.user, error = %e, "member could not take in the client's sender key");
                        }
                    }
                    Err(e) => {
                        Counters::bump(&self.counters.decrypt_failures);
                        tracing::warn!(device = %device, to = %recipient, id, error = %e, "member could not decrypt its sender-key copy");
                    }
                }
            }
        }
        if let Some(skmsg) = skmsg {
            let addressing = attr(message, "addressing_mode")
                .as_deref()
                .and_then(Addressing::parse)
                .unwrap_or_default();
            let post = ClientPost {
                sender: &sender,
                device,
                skmsg,
                id,
                time,
                addressing,
            };
            self.read_group_post(view, &mut state, &group, post, &mut replies)
                .await;
        }
        drop(state);
        Counters::bump(&self.counters.messages_acked);
        replies.insert(0, group_ack(id, chat));
        replies
    }

    async fn read_group_post(
        &self,
        view: &dyn ServerView,
        state: &mut State,
        group: &Group,
        post: ClientPost<'_>,
        replies: &mut Vec<Node>,
    ) {
        let ClientPost {
            sender,
            device,
            skmsg,
            id,
            time,
            addressing: post_addressing,
        } = post;
        let Some(NodeContent::Bytes(ciphertext)) = &skmsg.content else {
            return;
        };
        let version = attr(skmsg, "v").and_then(|v| v.parse().ok()).unwrap_or(2);
        let group_name = group.jid().to_string();
        let sender_address = sender.signal_address();
        let mut read_by = Vec::new();
        let mut decoded = None;
        for contact in group.contacts() {
            let Ok(member) = state.contact(contact) else {
                continue;
            };
            if !member.has_sender_key(&group_name, &sender_address).await {
                continue;
            }
            match member
                .group_decrypt(&group_name, &sender_address, ciphertext)
                .await
            {
                Ok(padded) => match wacore::messages::decode_plaintext(&padded, version) {
                    Ok(message) => {
                        decoded.get_or_insert(message);
                        read_by.push(contact.clone());
                    }
                    Err(e) => {
                        tracing::warn!(id, error = %e, "group post is not a WhatsApp message")
                    }
                },
                Err(e) => {
                    tracing::warn!(contact = %contact, id, error = %e, "member could not decrypt the group post")
                }
            }
        }
        let Some(message) = decoded else {
            Counters::bump(&self.counters.decrypt_failures);
            tracing::warn!(device = %device, group = %group_name, id, "no member could decrypt the group post");
            return;
        };
        if !state
            .group_inbox_ids
            .insert((group.id.clone(), id.to_string()))
        {
            Counters::bump(&self.counters.messages_duplicate);
            return;
        }
        Counters::bump(&self.counters.messages_received);
        let media = super::media_msg::summarize(view.media(), &message);
        state
            .group_inbox
            .entry(group.id.clone())
            .or_default()
            .push(InboxEntry {
                id: id.to_string(),
                from: device.to_non_ad().to_string(),
                to: group_name.clone(),
                addressing: post_addressing,
                text: super::inbound::text_of(&message),
                time,
                media,
            });
        if self.config.auto_delivery_receipts {
            for contact in read_by {
                let stanza = group_receipt_stanza(view, group, &contact, id, ReceiptKind::Delivery);
                Self::enqueue(
                    state,
                    sender,
                    super::outbound::receipt_pending(id, ReceiptKind::Delivery, stanza.clone()),
                );
                Counters::bump(&self.counters.receipts_sent);
                replies.push(stanza);
            }
        }
    }
}

/// One client post to a group, as it came in.
struct ClientPost<'a> {
    sender: &'a DeviceAddr,
    device: &'a Jid,
    skmsg: &'a Node,
    id: &'a str,
    time: u64,
    /// The post's `addressing_mode`.
    addressing: Addressing,
}

/// A member's receipt for a post in `group`, from the group with the member's
/// LID as participant.
fn group_receipt_stanza(
    view: &dyn ServerView,
    group: &Group,
    contact: &str,
    msg_id: &str,
    kind: ReceiptKind,
) -> Node {
    let mut b = NodeBuilder::new("receipt")
        .attr("from", group.jid())
        .attr("participant", Jid::lid(view.lid_of(contact)))
        .attr("id", msg_id)
        .attr("t", now_secs().to_string());
    if let Some(t) = kind.wire_type() {
        b = b.attr("type", t);
    }
    b.build()
}

fn group_ack(id: &str, chat: &Jid) -> Node {
    NodeBuilder::new("ack")
        .attr("class", "message")
        .attr("id", id)
        .attr("from", chat.clone())
        .attr("t", now_secs().to_string())
        .build()
}

/// A post's copy for the sender's own other companion: from the group, the
/// sending device as participant (by LID, its phone-number JID beside it),
/// its pairwise copy and the `skmsg`.
fn forwarded_group_copy(
    message: &Node,
    enc: &Node,
    skmsg: Option<&Node>,
    participant: &Jid,
    sender: &Jid,
    chat: &Jid,
) -> Node {
    let mut b = NodeBuilder::new("message")
        .attr("from", chat.clone())
        .attr("participant", participant.clone())
        .attr("participant_pn", sender.clone())
        .attr("t", now_secs().to_string());
    for key in ["id", "type", "addressing_mode"] {
        if let Some(value) = attr(message, key) {
            b = b.attr(key, value);
        }
    }
    let mut children = vec![enc.clone()];
    children.extend(skmsg.cloned());
    if let Some(identity) = message.get_optional_child("device-identity") {
        children.push(identity.clone());
    }
    b.children(children).build()
}
