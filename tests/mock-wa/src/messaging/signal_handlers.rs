//! Plugs the messaging side into the server core: [`SignalHandlers`] is
//! the core's [`StanzaHandlers`], and [`MockHandle`] gains the in-process
//! messaging controls.

use std::sync::Arc;

use async_trait::async_trait;
use wacore_binary::{Jid, Node};

use super::MessagingError;
use super::addressing::Addressing;
use super::directory::{AccountDevices, CompanionDevice, ServerView};
use super::hub::{InboxEntry, Messaging, ReceiptKind};
use crate::handlers::{AdminRequest, AdminResponse, Ctx, StanzaHandlers};
use crate::server::MockHandle;
use crate::state::{Device, PN_SERVER, ServerState, device_jid};

/// The Signal side's stanza handlers.
pub struct SignalHandlers {
    messaging: Arc<Messaging>,
}

impl SignalHandlers {
    pub fn new(messaging: Arc<Messaging>) -> Self {
        Self { messaging }
    }
}

/// The core's state seen through [`ServerView`].
struct CoreView<'a>(&'a ServerState);

impl ServerView for CoreView<'_> {
    fn account(&self, phone: &str) -> Option<AccountDevices> {
        let companions: Vec<CompanionDevice> = self
            .0
            .devices_of(phone)
            .into_iter()
            // The core pairs each device with its device id as ADV key index.
            .map(|d| CompanionDevice {
                device: d.device_id,
                key_index: u32::from(d.device_id),
            })
            .collect();
        (!companions.is_empty()).then(|| AccountDevices {
            raw_id: super::directory::raw_id_of(phone),
            companions,
        })
    }

    fn phone_of_lid(&self, lid_user: &str) -> Option<String> {
        self.0.phone_of_lid(lid_user)
    }

    fn lid_of(&self, phone: &str) -> String {
        self.0.lid_of(phone)
    }

    fn media(&self) -> Option<&crate::media::MediaStore> {
        Some(&self.0.media)
    }

    fn push(&self, device: &Jid, node: Node) -> bool {
        let is_receipt = node.tag == "receipt";
        let sent = self
            .0
            .push(&device_jid(&device.user, device.device, PN_SERVER), node);
        if sent && is_receipt {
            self.0.stats.bump(&self.0.stats.receipts_sent);
        }
        sent
    }
}

fn jid_of(device: &Device) -> Jid {
    Jid::pn_device(device.phone.as_str(), device.device_id)
}

#[async_trait]
impl StanzaHandlers for SignalHandlers {
    async fn message(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        let view = CoreView(&ctx.state);
        let replies = self
            .messaging
            .handle_message(&view, &jid_of(&ctx.device), node)
            .await;
        let stats = &ctx.state.stats;
        if replies.iter().any(|r| r.tag == "ack") {
            stats.bump(&stats.messages_acked);
        }
        replies
    }

    async fn receipt(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        self.messaging
            .handle_receipt(&CoreView(&ctx.state), &jid_of(&ctx.device), node)
            .await
    }

    async fn ack(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        self.messaging
            .handle_ack(&CoreView(&ctx.state), &jid_of(&ctx.device), node)
            .await;
        Vec::new()
    }

    async fn encrypt_iq(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        self.iq(ctx, node).await
    }

    async fn usync_iq(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        self.iq(ctx, node).await
    }

    async fn group_iq(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        vec![
            self.messaging
                .group_iq(&CoreView(&ctx.state), &jid_of(&ctx.device), node)
                .await,
        ]
    }

    async fn on_login(&self, ctx: &Ctx) -> Vec<Node> {
        self.messaging
            .backlog(&CoreView(&ctx.state), &jid_of(&ctx.device))
            .await
    }

    async fn admin(&self, state: &Arc<ServerState>, req: &AdminRequest) -> Option<AdminResponse> {
        let reply = self
            .messaging
            .admin(
                &CoreView(state),
                &req.method,
                &req.path,
                &req.query,
                &req.body,
            )
            .await?;
        Some(AdminResponse {
            status: reply.status,
            body: reply.body,
        })
    }
}

impl SignalHandlers {
    async fn iq(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        self.messaging
            .handle_iq(&CoreView(&ctx.state), &jid_of(&ctx.device), node)
            .await
            .into_iter()
            .collect()
    }
}

/// In-process equivalents of the messaging admin routes.
impl MockHandle {
    fn messaging_or_err(&self) -> Result<&Arc<Messaging>, MessagingError> {
        self.messaging().ok_or(MessagingError::NotEnabled)
    }

    /// What contact `contact` (phone number or JID) received, oldest first.
    pub async fn inbox(&self, contact: &str) -> Vec<InboxEntry> {
        match self.messaging() {
            Some(m) => m.inbox(contact).await,
            None => Vec::new(),
        }
    }

    /// Contact `from` sends `text` to account `to`, LID-addressed as the
    /// real server does; returns the message id.
    pub async fn deliver(
        &self,
        from: &str,
        to: &str,
        text: &str,
        id: Option<&str>,
    ) -> Result<String, MessagingError> {
        self.deliver_as(from, to, text, id, Addressing::Lid).await
    }

    /// Like [`Self::deliver`], naming the contact as `addressing` says.
    pub async fn deliver_as(
        &self,
        from: &str,
        to: &str,
        text: &str,
        id: Option<&str>,
        addressing: Addressing,
    ) -> Result<String, MessagingError> {
        self.messaging_or_err()?
            .deliver(
                &CoreView(self.state()),
                from,
                to,
                text,
                id.map(str::to_string),
                addressing,
            )
            .await
    }

    /// Contact `from` sends `message` as built by the caller (a reply, a
    /// reaction, an edit, a deletion for everyone) to account `to`;
    /// returns its id.
    pub async fn deliver_message(
        &self,
        from: &str,
        to: &str,
        message: waproto::whatsapp::Message,
        id: Option<&str>,
        addressing: Addressing,
    ) -> Result<String, MessagingError> {
        self.messaging_or_err()?
            .deliver_message(
                &CoreView(self.state()),
                from,
                to,
                message,
                id.map(str::to_string),
                addressing,
            )
            .await
    }

    /// Contact `from` sends an image or a document to account `to`; returns
    /// the message id.
    pub async fn deliver_media(
        &self,
        from: &str,
        to: &str,
        media: &super::MediaRequest,
        id: Option<&str>,
    ) -> Result<String, MessagingError> {
        self.messaging_or_err()?
            .deliver_media(
                &CoreView(self.state()),
                from,
                to,
                media,
                id.map(str::to_string),
                Addressing::Lid,
            )
            .await
    }

    /// Creates a group of contacts `members` and the account `with_account`;
    /// returns its JID.
    pub async fn create_group(
        &self,
        subject: &str,
        members: &[&str],
        with_account: &str,
    ) -> Result<String, MessagingError> {
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        self.messaging_or_err()?
            .create_group(&CoreView(self.state()), subject, &members, with_account)
            .await
    }

    /// Contact `from` posts `text` (or `media`) to group `group`; returns the
    /// message id.
    pub async fn post_to_group(
        &self,
        from: &str,
        group: &str,
        text: &str,
        media: Option<&super::MediaRequest>,
    ) -> Result<String, MessagingError> {
        self.messaging_or_err()?
            .post_to_group(&CoreView(self.state()), from, group, text, media, None)
            .await
    }

    /// Member `contact` sends a delivery or read receipt for the client's
    /// post `msg_id` in `group`.
    pub async fn group_receipt(
        &self,
        contact: &str,
        group: &str,
        msg_id: &str,
        kind: ReceiptKind,
    ) -> Result<(), MessagingError> {
        self.messaging_or_err()?
            .group_receipt(&CoreView(self.state()), contact, group, msg_id, kind)
            .await
    }

    /// What the account's clients posted to `group`, oldest first.
    pub async fn group_inbox(&self, group: &str) -> Vec<InboxEntry> {
        match self.messaging() {
            Some(m) => m.group_inbox(group).await,
            None => Vec::new(),
        }
    }

    /// The LID user of phone number `phone` (account or contact).
    pub fn lid_of(&self, phone: &str) -> String {
        self.state().lid_of(phone)
    }

    /// Contact `contact` sends a delivery or read receipt for `msg_id` to
    /// account `account`.
    pub async fn receipt(
        &self,
        contact: &str,
        account: &str,
        msg_id: &str,
        kind: ReceiptKind,
    ) -> Result<(), MessagingError> {
        self.messaging_or_err()?
            .receipt(
                &CoreView(self.state()),
                contact,
                account,
                msg_id,
                kind,
                None,
            )
            .await
    }

    /// Like [`Self::receipt`], from the contact's address in `addressing`
    /// whatever address the message went to (a phone that answers from its
    /// LID what was written to its number).
    pub async fn receipt_as(
        &self,
        contact: &str,
        account: &str,
        msg_id: &str,
        kind: ReceiptKind,
        addressing: Addressing,
    ) -> Result<(), MessagingError> {
        self.messaging_or_err()?
            .receipt(
                &CoreView(self.state()),
                contact,
                account,
                msg_id,
                kind,
                Some(addressing),
            )
            .await
    }
}
