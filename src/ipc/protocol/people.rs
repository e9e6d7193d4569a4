//! Params and results of the methods about people: `contacts` (and
//! `contacts --check`); the message and chat shapes they share with
//! `messages`, `chats` and `message_received` events.

use serde::{Deserialize, Serialize};

use super::MessageStatus;

/// Longest `emoji` `react` takes, in characters (an emoji with modifiers).
pub const MAX_EMOJI_CHARS: usize = 16;

/// Params of `react`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactParams {
    pub account: String,
    /// The message reacted to, as `messages` lists it.
    pub id: String,
    /// The reaction; empty takes it back.
    pub emoji: String,
    /// Wait for the server's ack (default), as `send` does.
    #[serde(default = "super::yes")]
    pub wait: bool,
}

/// Params of `edit`: a new text for a message this account sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditParams {
    pub account: String,
    /// The message edited, as `messages` lists it (`from_me`).
    pub id: String,
    pub text: String,
    #[serde(default = "super::yes")]
    pub wait: bool,
}

/// Params of `delete`: deletes a message this account sent, for everyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    pub account: String,
    /// The message deleted, as `messages` lists it (`from_me`).
    pub id: String,
    #[serde(default = "super::yes")]
    pub wait: bool,
}

/// Most numbers one `contacts` check asks about.
pub const MAX_CHECK: usize = 100;

/// A message, received or sent, as `messages` lists it and
/// `message_received` events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Position in the account's history; pass it as `before` to page.
    pub cursor: u64,
    pub id: String,
    /// The conversation: the person's number (`+15551234567`) when known,
    /// else their LID JID; a group's JID.
    pub chat: String,
    /// The sender's address as the message named it.
    pub sender: String,
    /// `+15551234567`, when known.
    pub sender_phone: Option<String>,
    /// `NNN@lid`, when known.
    pub sender_lid: Option<String>,
    /// The push name the sender set, when known.
    pub sender_name: Option<String>,
    /// Sent by this account (by walink or another of its devices).
    pub from_me: bool,
    /// When the sender sent it (Unix seconds).
    pub timestamp: u64,
    /// When walink stored it (Unix seconds).
    pub received_at: u64,
    /// `text`, `image`, `video`, `audio`, `voice`, `document`, `sticker`,
    /// `location`, `contact`, `reaction`, or `unsupported message`.
    pub kind: String,
    /// The body, or a caption.
    pub text: Option<String>,
    /// For a message walink sent: where it is.
    #[serde(default)]
    pub status: Option<MessageStatus>,
    /// A media message's file, as the message describes it.
    #[serde(default)]
    pub media: Option<MediaInfo>,
    /// The id of the message this one answers.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Its sender edited it (`text` is the new text).
    #[serde(default)]
    pub edited: bool,
    /// Deleted for everyone: `text` is gone.
    #[serde(default)]
    pub revoked: bool,
    /// One per person who reacted, oldest first.
    #[serde(default)]
    pub reactions: Vec<ReactionInfo>,
}

/// What a media message says of its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInfo {
    pub mimetype: Option<String>,
    /// Bytes.
    pub size: Option<u64>,
    pub filename: Option<String>,
    /// SHA-256 of the decrypted file, hex.
    pub sha256: Option<String>,
    /// Where walinkd saved the file as it arrived (`auto_download`), once
    /// it has.
    #[serde(default)]
    pub path: Option<String>,
}

/// A reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionInfo {
    pub emoji: String,
    /// Who reacted: their number (`+…`) when known, else their LID JID.
    pub by: String,
    pub by_phone: Option<String>,
    pub by_lid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    Person,
    Group,
}

/// One conversation: a person (whichever address they wrote from) or a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatInfo {
    /// The person's number (`+15551234567`) when known, else their LID
    /// JID; a group's JID. What `messages --chat` takes.
    pub chat: String,
    pub phone: Option<String>,
    pub lid: Option<String>,
    pub name: Option<String>,
    pub kind: ChatKind,
    /// Time of the newest message (Unix seconds).
    pub last_at: u64,
    pub messages: u64,
}

/// Params of `contacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsParams {
    pub account: String,
    /// Phone numbers to ask the server about (usync); normalized to digits
    /// when parsed. Without it, the contacts walink knows.
    #[serde(default)]
    pub check: Option<Vec<String>>,
}

/// One person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactInfo {
    /// `+15551234567`, when known.
    pub phone: Option<String>,
    /// `NNN@lid`, when known.
    pub lid: Option<String>,
    pub name: Option<String>,
    /// Only in the answer to a check: whether the number is on WhatsApp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_whatsapp: Option<bool>,
}

/// `contacts` result: every contact, or one entry per number checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactsResult {
    pub contacts: Vec<ContactInfo>,
}

/// One member of a group, as a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// `+15551234567`, when known.
    pub phone: Option<String>,
    /// `NNN@lid`, when known.
    pub lid: Option<String>,
    pub name: Option<String>,
    pub admin: bool,
}

/// One group the account is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// What `send` takes as `to` and `messages` as `chat`.
    pub jid: String,
    pub subject: String,
    pub participants: Vec<MemberInfo>,
}

/// `groups` result, by JID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsResult {
    pub groups: Vec<GroupInfo>,
}
