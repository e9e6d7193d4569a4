//! Params and results of reading the history: `messages` and `chats`.

use serde::{Deserialize, Serialize};

use super::{ChatInfo, StoredMessage};

/// Params of `messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesParams {
    pub account: String,
    /// Only this conversation: any address of the person (`+15551234567`,
    /// a phone or LID JID) or a group JID; normalized to a JID when parsed.
    #[serde(default)]
    pub chat: Option<String>,
    /// Page size, 1 to [`MAX_PAGE`]; default [`DEFAULT_PAGE`].
    #[serde(default)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page: only older messages.
    #[serde(default)]
    pub before: Option<u64>,
    /// Only messages whose text holds every word of this (full-text search).
    #[serde(default)]
    pub search: Option<String>,
}

/// Longest `search` accepted, in bytes.
pub const MAX_SEARCH: usize = 1024;

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;

/// `messages` result, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesResult {
    pub messages: Vec<StoredMessage>,
    /// `before` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<u64>,
}

/// `chats` result, most recently active first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatsResult {
    pub chats: Vec<ChatInfo>,
}
