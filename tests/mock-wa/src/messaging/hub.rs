//! Shared state of the messaging side and its public entry points.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use super::MessagingError;
use super::addressing::Addressing;
use super::bundle::Bundle;
use super::directory::ServerView;
use super::sim_device::SimDevice;
use super::stanza::{attr, jid_attr};
use super::stats::{Counters, MessagingStats};

#[derive(Clone, Debug)]
pub struct MessagingConfig {
    /// A contact sends a delivery receipt for every message it decrypts.
    pub auto_delivery_receipts: bool,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            auto_delivery_receipts: true,
        }
    }
}

/// One message a contact received from an account.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InboxEntry {
    pub id: String,
    /// The sending account's user JID, e.g. `15550000001@s.whatsapp.net`.
    pub from: String,
    /// The contact's address the client sent it to: its LID JID or its
    /// phone-number JID (`addressing` says which).
    pub to: String,
    pub addressing: Addressing,
    /// The text, or a bracketed description of non-text content.
    pub text: String,
    /// Unix seconds: the stanza's `t` when present, else arrival time.
    pub time: u64,
    /// Media the message carried, as the contact decrypted it; `None` for
    /// a text.
    pub media: Option<super::media_msg::MediaSummary>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivery,
    Read,
}

impl ReceiptKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "delivery" | "delivered" => Some(Self::Delivery),
            "read" => Some(Self::Read),
            _ => None,
        }
    }

    /// The receipt's `type` attribute: a delivery receipt has none.
    pub fn wire_type(self) -> Option<&'static str> {
        match self {
            Self::Delivery => None,
            Self::Read => Some("read"),
        }
    }
}

/// A device of an account: the phone-number user and the device number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct DeviceAddr {
    pub user: String,
    pub device: u16,
}

impl DeviceAddr {
    /// Devices are keyed by phone number; a LID JID is mapped to its phone
    /// number when the server knows it.
    pub fn of(view: &dyn ServerView, jid: &Jid) -> Self {
        let user = if jid.is_lid() {
            view.phone_of_lid(&jid.user)
                .unwrap_or_else(|| jid.user.to_string())
        } else {
            jid.user.to_string()
        };
        Self {
            user,
            device: jid.device,
        }
    }

    /// The device a JID such as `15550000001:1@s.whatsapp.net` names.
    pub fn parse(device: &str) -> Option<Self> {
        let jid = device.parse::<Jid>().ok()?;
        Some(Self {
            user: jid.user.to_string(),
            device: jid.device,
        })
    }

    pub fn jid(&self) -> Jid {
        Jid::pn_device(self.user.as_str(), self.device)
    }

    /// The name this device's sessions have in every simulated store.
    pub fn signal_address(&self) -> wacore_libsignal::protocol::ProtocolAddress {
        super::sim_device::address_of(&self.user, "s.whatsapp.net", self.device)
    }
}

/// Keys a device uploaded (`iq xmlns=encrypt type=set`).
#[derive(Clone, Debug)]
pub(super) struct UploadedKeys {
    pub registration_id: u32,
    pub identity: [u8; 32],
    pub signed_id: u32,
    pub signed_public: [u8; 32],
    pub signed_signature: Vec<u8>,
    pub prekeys: VecDeque<(u32, [u8; 32])>,
}

impl UploadedKeys {
    /// A bundle for a fetch; uses up one one-time prekey when any is left.
    pub fn take_bundle(&mut self) -> Bundle {
        Bundle {
            registration_id: self.registration_id,
            identity: self.identity,
            signed_id: self.signed_id,
            signed_public: self.signed_public,
            signed_signature: self.signed_signature.clone(),
            prekey: self.prekeys.pop_front(),
        }
    }
}

/// What is owed to one device, kept until the device acks it.
#[derive(Clone, Debug)]
pub(super) enum PendingBody {
    /// Encrypted once, resent byte for byte as the real server does.
    Stanza(Node),
    /// Not yet encryptable: the device has uploaded no keys yet.
    Plain(SentText),
}

/// What a simulated device writes to a companion, before encryption.
#[derive(Clone, Debug)]
pub(super) enum Content {
    /// A contact's text message.
    Text(String),
    /// The account's own phone sharing app-state sync keys (a peer message).
    KeyShare(Arc<Vec<super::key_share::AppStateKey>>),
    /// A contact's image or document, already on the media host.
    Media(Arc<super::media_msg::MediaContent>),
    /// A contact's post to a group, under its sender key.
    Group(Arc<super::groups::GroupPost>),
    /// Any other message a contact sends, as built by the caller (a reply,
    /// a reaction, an edit, a deletion for everyone).
    Message(Arc<waproto::whatsapp::Message>),
}

#[derive(Clone, Debug)]
pub(super) struct Pending {
    /// `message` or `receipt`: the `class` of the client's ack.
    pub class: &'static str,
    pub id: String,
    /// A receipt's `type` (`None` for delivery), echoed in the client's ack.
    pub receipt_type: Option<&'static str>,
    pub body: PendingBody,
}

#[derive(Default)]
pub(super) struct DeviceSlot {
    pub queue: VecDeque<Pending>,
}

#[derive(Default)]
pub(super) struct State {
    /// Simulated device 0 of every user that was ever addressed, by user.
    pub contacts: HashMap<String, SimDevice>,
    pub uploads: HashMap<DeviceAddr, UploadedKeys>,
    pub inbox: HashMap<String, Vec<InboxEntry>>,
    pub inbox_ids: HashSet<(String, String)>,
    pub devices: HashMap<DeviceAddr, DeviceSlot>,
    /// What contacts sent to each device, to send again when the device
    /// asks with a retry receipt (it acks even what it cannot decrypt).
    pub sent: HashMap<(DeviceAddr, String), SentText>,
    pub sent_order: VecDeque<(DeviceAddr, String)>,
    /// Retry receipts a contact sent per message id.
    pub retries: HashMap<(String, String), u8>,
    /// Companions the account's phone already shared its app-state keys with.
    pub keys_shared: HashSet<DeviceAddr>,
    /// Groups by the user part of their JID.
    pub groups: HashMap<String, super::groups::Group>,
    pub next_group: u64,
    /// What clients posted, per group, and the ids already recorded.
    pub group_inbox: HashMap<String, Vec<InboxEntry>>,
    pub group_inbox_ids: HashSet<(String, String)>,
    /// (group, contact, device): the contact's sender key went to the device.
    pub skdm_sent: HashSet<(String, String, DeviceAddr)>,
}

/// A contact message as written, before encryption.
#[derive(Clone, Debug)]
pub(super) struct SentText {
    pub from: String,
    pub content: Content,
    pub time: u64,
    /// How the stanza names the contact.
    pub addressing: Addressing,
}

/// Retry receipts come within seconds; this bounds memory in long runs.
const SENT_KEPT: usize = 50_000;

impl State {
    pub fn remember_sent(&mut self, addr: &DeviceAddr, id: &str, sent: SentText) {
        let key = (addr.clone(), id.to_string());
        if self.sent.insert(key.clone(), sent).is_none() {
            self.sent_order.push_back(key);
        }
        while self.sent_order.len() > SENT_KEPT {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
    }
}

impl State {
    pub fn contact(&mut self, user: &str) -> Result<&mut SimDevice, MessagingError> {
        if !self.contacts.contains_key(user) {
            let device = SimDevice::new(&format!("{user}@s.whatsapp.net"))?;
            self.contacts.insert(user.to_string(), device);
        }
        self.contacts
            .get_mut(user)
            .ok_or_else(|| MessagingError::BadAddress(user.to_string()))
    }
}

pub struct Messaging {
    pub(super) config: MessagingConfig,
    pub(super) state: Mutex<State>,
    pub(super) counters: Counters,
}

impl Messaging {
    pub fn new(config: MessagingConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: Mutex::new(State::default()),
            counters: Counters::default(),
        })
    }

    pub fn stats(&self) -> MessagingStats {
        self.counters.snapshot()
    }

    /// Everything `contact` (phone number or JID) received, oldest first.
    pub async fn inbox(&self, contact: &str) -> Vec<InboxEntry> {
        let Some(user) = super::stanza::user_of(contact) else {
            return Vec::new();
        };
        self.state
            .lock()
            .await
            .inbox
            .get(&user)
            .cloned()
            .unwrap_or_default()
    }

    /// Contact `contact` loses every Signal session (as after a reinstall,
    /// keeping its keys): the next message a client sends on an old session
    /// fails to decrypt, and the contact asks for a retry.
    pub async fn forget_sessions(&self, contact: &str) {
        let Some(user) = super::stanza::user_of(contact) else {
            return;
        };
        if let Some(device) = self.state.lock().await.contacts.get_mut(&user) {
            device.forget_all_sessions();
        }
    }

    /// How many messages and receipts device `device` (e.g.
    /// `15550000001:1@s.whatsapp.net`) has not acked yet.
    pub async fn pending(&self, device: &str) -> usize {
        let Some(addr) = DeviceAddr::parse(device) else {
            return 0;
        };
        self.state
            .lock()
            .await
            .devices
            .get(&addr)
            .map_or(0, |s| s.queue.len())
    }

    /// How many one-time prekeys the server holds for device `device`
    /// (e.g. `15550000001:1@s.whatsapp.net`): what its uploads added and
    /// bundle fetches did not take.
    pub async fn prekeys_held(&self, device: &str) -> usize {
        let Some(addr) = DeviceAddr::parse(device) else {
            return 0;
        };
        self.state
            .lock()
            .await
            .uploads
            .get(&addr)
            .map_or(0, |keys| keys.prekeys.len())
    }

    /// Answers the `encrypt` and `usync` IQs of a logged-in `device`;
    /// `None` for any other IQ, which stays the core's to answer.
    pub async fn handle_iq(&self, view: &dyn ServerView, device: &Jid, iq: &Node) -> Option<Node> {
        match attr(iq, "xmlns").as_deref() {
            Some("encrypt") => Some(self.handle_encrypt_iq(view, device, iq).await),
            Some("usync") => Some(self.handle_usync_iq(view, device, iq)),
            _ => None,
        }
    }

    /// What is still owed to `device`, to send right after `<success>`
    /// (marked `offline`, as the real server marks its backlog); the core
    /// follows it with `<ib><offline count=N/></ib>`. Items stay queued until
    /// the device acks them, so an unacked one comes again next login.
    pub async fn backlog(&self, view: &dyn ServerView, device: &Jid) -> Vec<Node> {
        let addr = DeviceAddr::of(view, device);
        let mut state = self.state.lock().await;
        Self::share_keys_once(view, &mut state, device);
        let queue_len = state.devices.get(&addr).map_or(0, |s| s.queue.len());
        let mut out = Vec::new();
        for index in 0..queue_len {
            if let Some(mut stanza) = self.stanza_of(view, &mut state, &addr, index).await {
                stanza.attrs.insert("offline", "1");
                if stanza.tag == "message" {
                    Counters::bump(&self.counters.messages_sent_to_devices);
                }
                out.push(stanza);
            }
        }
        out
    }

    /// The client acknowledged something the mock sent it.
    pub async fn handle_ack(&self, view: &dyn ServerView, device: &Jid, ack: &Node) {
        let (Some(class), Some(id)) = (attr(ack, "class"), attr(ack, "id")) else {
            return;
        };
        Counters::bump(&self.counters.client_acks);
        let ack_type = attr(ack, "type");
        let mut state = self.state.lock().await;
        if let Some(slot) = state.devices.get_mut(&DeviceAddr::of(view, device)) {
            slot.queue.retain(|p| {
                let matches = p.class == class
                    && p.id == id
                    && (p.class != "receipt" || p.receipt_type == ack_type.as_deref());
                !matches
            });
        }
    }

    /// A client's `<receipt>` for messages contacts sent it. A receipt
    /// proves delivery as much as an ack does, so it settles those messages
    /// too. Answers with the server's `<ack class="receipt">`.
    pub async fn handle_receipt(
        &self,
        view: &dyn ServerView,
        device: &Jid,
        receipt: &Node,
    ) -> Vec<Node> {
        let Some(id) = attr(receipt, "id") else {
            return Vec::new();
        };
        Counters::bump(&self.counters.receipts_received);
        let mut ids = vec![id.clone()];
        if let Some(list) = receipt.get_optional_child("list") {
            ids.extend(
                list.get_children_by_tag("item")
                    .filter_map(|item| attr(item, "id")),
            );
        }
        let receipt_type = attr(receipt, "type");
        if receipt_type.as_deref() == Some("retry") {
            self.resend_after_retry(view, &DeviceAddr::of(view, device), &id, receipt)
                .await;
        } else {
            let sender = DeviceAddr::of(view, device);
            let mut state = self.state.lock().await;
            if let Some(slot) = state.devices.get_mut(&sender) {
                slot.queue
                    .retain(|p| !(p.class == "message" && ids.contains(&p.id)));
            }
            if let Some(to) = jid_attr(receipt, "to") {
                self.forward_receipt(
                    view,
                    &mut state,
                    &sender,
                    &to,
                    &ids,
                    receipt_type.as_deref(),
                )
                .await;
            }
        }
        let mut ack = NodeBuilder::new("ack")
            .attr("class", "receipt")
            .attr("id", id);
        if let Some(to) = jid_attr(receipt, "to") {
            ack = ack.attr("from", to);
        }
        if let Some(t) = receipt_type {
            ack = ack.attr("type", t);
        }
        vec![ack.build()]
    }

    /// A receipt one account's device sends for another account's message
    /// goes to every device of that account, as the real server relays it.
    async fn forward_receipt(
        &self,
        view: &dyn ServerView,
        state: &mut State,
        sender: &DeviceAddr,
        to: &Jid,
        ids: &[String],
        receipt_type: Option<&str>,
    ) {
        // A passive companion reports delivery as "inactive".
        let Some(kind) = (match receipt_type {
            None | Some("inactive") => Some(ReceiptKind::Delivery),
            Some("read") => Some(ReceiptKind::Read),
            _ => None,
        }) else {
            return;
        };
        let target = DeviceAddr::of(view, to);
        if target.user == sender.user {
            return;
        }
        let devices = super::outbound::account_devices(view, state, &target.user);
        for id in ids {
            let from = Addressing::of(to).jid(view, &sender.user, 0);
            let stanza = super::outbound::receipt_stanza(from, id, kind);
            for addr in &devices {
                let pending = super::outbound::receipt_pending(id, kind, stanza.clone());
                self.push(view, state, addr, pending).await;
            }
        }
    }

    /// Queues `pending` for `addr` without writing it: the caller hands the
    /// stanza to the connection itself, in order with its other replies.
    pub(super) fn enqueue(state: &mut State, addr: &DeviceAddr, pending: Pending) {
        state
            .devices
            .entry(addr.clone())
            .or_default()
            .queue
            .push_back(pending);
    }

    /// Queues `pending` for `addr` and writes it out at once when the device
    /// is online.
    pub(super) async fn push(
        &self,
        view: &dyn ServerView,
        state: &mut State,
        addr: &DeviceAddr,
        pending: Pending,
    ) {
        let slot = state.devices.entry(addr.clone()).or_default();
        slot.queue.push_back(pending);
        let index = slot.queue.len() - 1;
        if let Some(stanza) = self.stanza_of(view, state, addr, index).await {
            let is_message = stanza.tag == "message";
            if view.push(&addr.jid(), stanza) && is_message {
                Counters::bump(&self.counters.messages_sent_to_devices);
            }
        }
    }

    /// Sends the queued messages of `addr` that could not be encrypted
    /// before (it had uploaded no keys), now that it may have.
    pub(super) async fn send_unencrypted(
        &self,
        view: &dyn ServerView,
        state: &mut State,
        addr: &DeviceAddr,
    ) {
        let waiting: Vec<usize> = state
            .devices
            .get(addr)
            .map(|slot| {
                slot.queue
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| matches!(p.body, PendingBody::Plain { .. }))
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default();
        for index in waiting {
            if let Some(stanza) = self.stanza_of(view, state, addr, index).await
                && view.push(&addr.jid(), stanza)
            {
                Counters::bump(&self.counters.messages_sent_to_devices);
            }
        }
    }

    /// The stanza of queue item `index` of `addr`, encrypting it first when
    /// that has not been possible before; `None` while it cannot be.
    async fn stanza_of(
        &self,
        view: &dyn ServerView,
        state: &mut State,
        addr: &DeviceAddr,
        index: usize,
    ) -> Option<Node> {
        let pending = state.devices.get(addr)?.queue.get(index)?.clone();
        match pending.body {
            PendingBody::Stanza(node) => Some(node),
            PendingBody::Plain(sent) => {
                match self
                    .encrypt_for_device(view, state, addr, &pending.id, &sent)
                    .await
                {
                    Ok(Some(node)) => {
                        if let Some(item) = state
                            .devices
                            .get_mut(addr)
                            .and_then(|s| s.queue.get_mut(index))
                        {
                            item.body = PendingBody::Stanza(node.clone());
                        }
                        Some(node)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(device = ?addr, id = %pending.id, error = %e, "could not encrypt a contact message for this device; it stays queued");
                        None
                    }
                }
            }
        }
    }
}
