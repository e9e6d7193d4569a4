//! Library events translated into walink's own, so nothing above `wa/`
//! depends on whatsapp-rust types.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use wacore::proto_helpers::MessageExt;
use wacore::types::events::{Event, EventHandler, EventInterest, EventKind, InboundMessage};
use wacore::types::presence::ReceiptType;

/// What happened on an account's connection.
#[derive(Debug, Clone, PartialEq)]
pub enum WaEvent {
    Qr {
        code: String,
        timeout: Duration,
    },
    QrExhausted,
    PairCode {
        code: String,
    },
    Paired {
        jid: String,
    },
    PairFailed {
        error: String,
    },
    Connected,
    /// The transport ended; `clean` for a routine server recycle.
    Disconnected {
        clean: bool,
        reason: String,
    },
    LoggedOut {
        reason: String,
    },
    Replaced,
    StreamError {
        code: u16,
    },
    TemporaryBan {
        expire: Duration,
    },
    ServerAck {
        id: String,
        error: Option<String>,
    },
    Receipt {
        ids: Vec<String>,
        status: ReceiptStatus,
        from: String,
    },
    Message(Box<IncomingMessage>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    Delivered,
    Read,
}

/// An incoming message, reduced to what walink stores and shows: the
/// shape the inbox keeps (chat and sender as the message named them), and
/// the other forms of those addresses the message carried, from which the
/// message layer learns who is who.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub message: crate::store::Inbound,
    /// The sender's other address: the phone-number JID of a LID-addressed
    /// sender (`sender_pn`, `participant_pn`), or the LID of a
    /// phone-addressed one.
    pub sender_alt: Option<String>,
    /// The chat's other address, for a one-to-one chat written from
    /// another device of the account (`recipient_pn`/`recipient_lid`).
    pub chat_alt: Option<String>,
    pub is_group: bool,
    /// The name the sender set for themselves; empty names are `None`.
    pub push_name: Option<String>,
    /// The id of the message this one quotes (a reply).
    pub reply_to: Option<String>,
    /// Set for an edit, a deletion for everyone or a reaction: a change
    /// to another message rather than one of its own.
    pub change: Option<crate::store::Change>,
    /// What a media message says of its file.
    pub media: Option<crate::store::MediaMeta>,
    /// What fetching that file needs.
    pub fetch: Option<crate::store::MediaRef>,
}

/// Forwards library events into a channel. The library calls handlers
/// synchronously on its own tasks, so this never blocks: the channel is
/// unbounded and drained by the account supervisor.
pub(crate) struct Forwarder {
    pub(crate) tx: mpsc::UnboundedSender<WaEvent>,
}

impl EventHandler for Forwarder {
    fn handle_event(&self, event: Arc<Event>) {
        for e in translate(&event) {
            let _ = self.tx.send(e);
        }
    }

    fn interest(&self) -> EventInterest {
        EventInterest::of(&[
            EventKind::PairingQrCode,
            EventKind::PairingQrCodesExhausted,
            EventKind::PairingCode,
            EventKind::PairSuccess,
            EventKind::PairError,
            EventKind::Connected,
            EventKind::Disconnected,
            EventKind::LoggedOut,
            EventKind::StreamReplaced,
            EventKind::StreamError,
            EventKind::TemporaryBan,
            EventKind::ServerAck,
            EventKind::Receipt,
            EventKind::Messages,
            EventKind::RawNode,
        ])
    }
}

fn translate(event: &Event) -> Vec<WaEvent> {
    let one = |e| vec![e];
    match event {
        Event::PairingQrCode(q) => one(WaEvent::Qr {
            code: q.code.clone(),
            timeout: q.timeout,
        }),
        Event::PairingQrCodesExhausted(_) => one(WaEvent::QrExhausted),
        Event::PairingCode(p) => one(WaEvent::PairCode {
            code: p.code.clone(),
        }),
        Event::PairSuccess(p) => one(WaEvent::Paired {
            jid: p.id.to_string(),
        }),
        Event::PairError(p) => one(WaEvent::PairFailed {
            error: p.error.clone(),
        }),
        Event::Connected(_) => one(WaEvent::Connected),
        Event::Disconnected(d) => one(WaEvent::Disconnected {
            clean: d.reason.is_clean_shutdown(),
            reason: d.reason.to_string(),
        }),
        Event::LoggedOut(l) => one(WaEvent::LoggedOut {
            reason: format!("{:?}", l.reason),
        }),
        Event::StreamReplaced(_) => one(WaEvent::Replaced),
        Event::StreamError(s) => s
            .code
            .parse()
            .map(|code| vec![WaEvent::StreamError { code }])
            .unwrap_or_default(),
        Event::TemporaryBan(b) => one(WaEvent::TemporaryBan {
            expire: b.expire.to_std().unwrap_or(Duration::from_secs(3600)),
        }),
        Event::ServerAck(a) if a.class.as_deref().is_none_or(|c| c == "message") => {
            one(WaEvent::ServerAck {
                id: a.id.clone(),
                error: a.error.clone(),
            })
        }
        Event::Receipt(r) => {
            let status = match r.r#type {
                ReceiptType::Delivered => ReceiptStatus::Delivered,
                ReceiptType::Read | ReceiptType::ReadSelf => ReceiptStatus::Read,
                _ => return Vec::new(),
            };
            one(WaEvent::Receipt {
                ids: r.message_ids.iter().map(|id| id.to_string()).collect(),
                status,
                from: r.source.chat.to_string(),
            })
        }
        // Messages the durability hook committed were announced by the
        // inbox when first stored; only the ones that bypass it (newsletters,
        // placeholder recoveries) are news here.
        Event::Messages(batch) if batch.hook_committed => Vec::new(),
        Event::Messages(batch) => batch
            .messages
            .iter()
            .filter(|m| !is_device_key_exchange(m))
            .map(|m| WaEvent::Message(Box::new(incoming(m))))
            .collect(),
        // The library reports 503/429/515 only in its logs; the raw
        // `<stream:error>` is the one place their codes are visible, and the
        // reconnect policy depends on them.
        Event::RawNode(node) => {
            let node = node.get();
            if node.tag != "stream:error" {
                return Vec::new();
            }
            node.get_attr("code")
                .and_then(|c| c.as_str().parse().ok())
                .map(|code| vec![WaEvent::StreamError { code }])
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// App-state key shares and key requests travel between the account's own
/// devices as messages (the phone shares its keys right after pairing);
/// they carry no content for anyone's history, so walink never stores them.
pub(crate) fn is_device_key_exchange(m: &InboundMessage) -> bool {
    m.message
        .get_base_message()
        .protocol_message
        .as_option()
        .is_some_and(|p| {
            p.app_state_sync_key_share.is_set() || p.app_state_sync_key_request.is_set()
        })
}

/// A decrypted message reduced to walink's view of it.
pub(crate) fn incoming(m: &InboundMessage) -> IncomingMessage {
    let info = &m.info;
    let source = &info.source;
    IncomingMessage {
        message: crate::store::Inbound {
            id: info.id.to_string(),
            chat: source.chat.to_string(),
            sender: source.sender.to_string(),
            from_me: source.is_from_me,
            timestamp: info.timestamp.timestamp(),
            // A caption is the media's text.
            text: m
                .message
                .text_content()
                .or_else(|| m.message.get_caption())
                .map(str::to_string),
            description: describe(&m.message),
        },
        sender_alt: source.sender_alt.as_ref().map(|j| j.to_string()),
        chat_alt: source.recipient_alt.as_ref().map(|j| j.to_string()),
        is_group: source.is_group,
        push_name: (!info.push_name.is_empty()).then(|| info.push_name.clone()),
        reply_to: reply_to(&m.message),
        change: change(&m.message),
        media: media(&m.message),
        fetch: fetch(&m.message),
    }
}

fn media(message: &whatsapp_rust::waproto::whatsapp::Message) -> Option<crate::store::MediaMeta> {
    let base = message.get_base_message();
    let hex = |h: &Option<Vec<u8>>| {
        h.as_ref()
            .map(|h| h.iter().map(|b| format!("{b:02x}")).collect::<String>())
    };
    macro_rules! meta {
        ($m:expr, $filename:expr) => {
            crate::store::MediaMeta {
                mimetype: $m.mimetype.clone(),
                size: $m.file_length,
                filename: $filename,
                sha256: hex(&$m.file_sha256),
                path: None,
            }
        };
    }
    if let Some(m) = base.image_message.as_option() {
        return Some(meta!(m, None));
    }
    if let Some(m) = base.video_message.as_option() {
        return Some(meta!(m, None));
    }
    if let Some(m) = base.audio_message.as_option() {
        return Some(meta!(m, None));
    }
    if let Some(m) = base.document_message.as_option() {
        return Some(meta!(m, m.file_name.clone()));
    }
    if let Some(m) = base.sticker_message.as_option() {
        return Some(meta!(m, None));
    }
    None
}

/// Where a media message's file is and the key that opens it; `None` for
/// a message without a file, or one whose file carries no key.
fn fetch(message: &whatsapp_rust::waproto::whatsapp::Message) -> Option<crate::store::MediaRef> {
    let base = message.get_base_message();
    macro_rules! fetch {
        ($m:expr, $kind:expr) => {
            Some(crate::store::MediaRef {
                kind: $kind.to_owned(),
                media_key: $m.media_key.clone()?,
                direct_path: $m.direct_path.clone(),
                url: $m.url.clone(),
                file_sha256: $m.file_sha256.clone(),
                file_enc_sha256: $m.file_enc_sha256.clone(),
                size: $m.file_length,
            })
        };
    }
    if let Some(m) = base.image_message.as_option() {
        return fetch!(m, "image");
    }
    if let Some(m) = base.video_message.as_option() {
        return fetch!(m, "video");
    }
    if let Some(m) = base.audio_message.as_option() {
        return fetch!(
            m,
            if m.ptt == Some(true) {
                "voice"
            } else {
                "audio"
            }
        );
    }
    if let Some(m) = base.document_message.as_option() {
        return fetch!(m, "document");
    }
    if let Some(m) = base.sticker_message.as_option() {
        return fetch!(m, "sticker");
    }
    None
}

/// The id of the message `message` quotes, from the context of whichever
/// content it carries.
fn reply_to(message: &whatsapp_rust::waproto::whatsapp::Message) -> Option<String> {
    let base = message.get_base_message();
    [
        base.extended_text_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.image_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.video_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.audio_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.document_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.sticker_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
    ]
    .into_iter()
    .flatten()
    .find_map(|c| c.stanza_id.clone())
}

/// What `message` does to an earlier message, if it is an edit, a deletion
/// for everyone or a reaction.
fn change(message: &whatsapp_rust::waproto::whatsapp::Message) -> Option<crate::store::Change> {
    use crate::store::Change;
    use whatsapp_rust::waproto::whatsapp::message::protocol_message::Type;
    let base = message.get_base_message();
    if let Some(reaction) = base.reaction_message.as_option() {
        return Some(Change::React {
            id: reaction.key.as_option()?.id.clone()?,
            emoji: reaction.text.clone().unwrap_or_default(),
        });
    }
    let protocol = base.protocol_message.as_option()?;
    let id = protocol.key.as_option()?.id.clone()?;
    match protocol.r#type? {
        Type::REVOKE => Some(Change::Revoke { id }),
        Type::MESSAGE_EDIT => Some(Change::Edit {
            id,
            text: protocol
                .edited_message
                .as_option()
                .and_then(|m| m.text_content().map(str::to_string)),
        }),
        _ => None,
    }
}

/// What kind of content a message without text carries.
fn describe(message: &whatsapp_rust::waproto::whatsapp::Message) -> Option<String> {
    if message.text_content().is_some() {
        return None;
    }
    let base = message.get_base_message();
    let kind = if base.image_message.is_set() {
        "image"
    } else if base.video_message.is_set() {
        "video"
    } else if base
        .audio_message
        .as_option()
        .is_some_and(|a| a.ptt == Some(true))
    {
        "voice"
    } else if base.audio_message.is_set() {
        "audio"
    } else if base.document_message.is_set() {
        "document"
    } else if base.sticker_message.is_set() {
        "sticker"
    } else if base.location_message.is_set() {
        "location"
    } else if base.contact_message.is_set() {
        "contact"
    } else if base.reaction_message.is_set() {
        "reaction"
    } else {
        "unsupported message"
    };
    Some(kind.to_string())
}
