//! What happens to a message after it arrived: replies point at it, edits
//! change its text, a deletion for everyone marks it revoked, reactions
//! attach to it. Applied in the commit that stores the message carrying
//! them, so a redelivery applies them again to the same effect.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::MessageStore;

/// A message that changes another one (by WhatsApp id) instead of being
/// one of its own in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Edit {
        id: String,
        text: Option<String>,
    },
    /// Deleted for everyone: the text goes, unless the account keeps it.
    Revoke {
        id: String,
    },
    /// `emoji` empty: the reaction was taken back.
    React {
        id: String,
        emoji: String,
    },
}

/// A reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// Who reacted (an address as the reaction named it).
    pub reactor: String,
    pub emoji: String,
}

/// What a media message says of its file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaMeta {
    pub mimetype: Option<String>,
    /// Bytes.
    pub size: Option<u64>,
    pub filename: Option<String>,
    /// Of the decrypted file, hex.
    pub sha256: Option<String>,
    /// Where walink saved the file, once it has (kept in the media index,
    /// never in the message's JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// What a stored message carries beyond its text, and what changed about
/// it since it arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    pub media: Option<MediaMeta>,
    pub reply_to: Option<String>,
    pub edited: bool,
    pub revoked: bool,
    /// For an edited or revoked message, its text now: read in the same row
    /// as those flags, so a change landing between the page read and this
    /// one never shows a new flag beside the old text.
    pub current_text: Option<Option<String>>,
    pub reactions: Vec<Reaction>,
}

/// Applies `change`, made by the sender named by each of `senders` (its
/// addresses: the first as the change named it). Edits and deletions only
/// touch a message of that same sender: nobody edits another's words.
pub(super) fn apply(
    conn: &Connection,
    account: &str,
    senders: &[String],
    change: &Change,
    now_ms: u64,
    keep_revoked_text: bool,
) -> rusqlite::Result<()> {
    let by = &senders[0];
    let same_sender = |id: &str| -> rusqlite::Result<Vec<u64>> {
        let mut stmt =
            conn.prepare_cached("SELECT seq, sender FROM inbox WHERE account = ?1 AND id = ?2")?;
        let rows = stmt.query_map(params![account, id], |r| {
            Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut seqs = Vec::new();
        for row in rows {
            let (seq, sender) = row?;
            if senders.contains(&sender) {
                seqs.push(seq);
            }
        }
        Ok(seqs)
    };
    match change {
        Change::Edit { id, text } => {
            for seq in same_sender(id)? {
                conn.prepare_cached(
                    "UPDATE inbox SET body = ?2, edited = 1 WHERE seq = ?1 AND NOT revoked",
                )?
                .execute(params![seq, text])?;
            }
        }
        Change::Revoke { id } => {
            let sql = if keep_revoked_text {
                "UPDATE inbox SET revoked = 1 WHERE seq = ?1"
            } else {
                "UPDATE inbox SET body = NULL, revoked = 1 WHERE seq = ?1"
            };
            for seq in same_sender(id)? {
                conn.prepare_cached(sql)?.execute([seq])?;
            }
        }
        Change::React { id, emoji } if emoji.is_empty() => {
            conn.prepare_cached(
                "DELETE FROM reactions WHERE account = ?1 AND message_id = ?2 AND reactor = ?3",
            )?
            .execute(params![account, id, by])?;
        }
        Change::React { id, emoji } => {
            conn.prepare_cached(
                "INSERT INTO reactions (account, message_id, reactor, emoji, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account, message_id, reactor) \
                 DO UPDATE SET emoji = excluded.emoji, at = excluded.at",
            )?
            .execute(params![account, id, by, emoji, now_ms])?;
        }
    }
    Ok(())
}

pub(super) fn set_media(conn: &Connection, seq: u64, media: &MediaMeta) -> rusqlite::Result<()> {
    let json = serde_json::to_string(media)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached("UPDATE inbox SET media = ?2 WHERE seq = ?1")?
        .execute(params![seq, json])?;
    Ok(())
}

pub(super) fn set_reply_to(conn: &Connection, seq: u64, reply_to: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE inbox SET reply_to = ?2 WHERE seq = ?1")?
        .execute(params![seq, reply_to])?;
    Ok(())
}

impl MessageStore {
    /// The conversation key of the stored message `id`, if walink has it.
    pub async fn chat_of(&self, id: &str) -> Result<Option<String>, super::StoreError> {
        let id = id.to_owned();
        self.read("find a message", move |conn, account| {
            conn.prepare_cached("SELECT chat FROM inbox WHERE account = ?1 AND id = ?2 LIMIT 1")?
                .query_row(params![account, id], |r| r.get(0))
                .optional()
        })
        .await
    }

    /// The conversation key of message `id` if this account sent it, and
    /// whether it was deleted for everyone since.
    pub async fn sent_chat_of(
        &self,
        id: &str,
    ) -> Result<Option<(String, bool)>, super::StoreError> {
        let id = id.to_owned();
        self.read("find a message", move |conn, account| {
            conn.prepare_cached(
                "SELECT chat, revoked FROM inbox WHERE account = ?1 AND id = ?2 AND from_me \
                 LIMIT 1",
            )?
            .query_row(params![account, id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
        })
        .await
    }

    /// What changed about the messages at `seqs` (only those with news).
    pub async fn annotations(
        &self,
        seqs: Vec<u64>,
    ) -> Result<HashMap<u64, Annotations>, super::StoreError> {
        self.read("read message changes", move |conn, account| {
            let mut found = HashMap::new();
            let mut row = conn.prepare_cached(
                "SELECT inbox.id, inbox.reply_to, inbox.edited, inbox.revoked, inbox.media, \
                 inbox.body, media.path FROM inbox LEFT JOIN media ON media.seq = inbox.seq \
                 WHERE inbox.seq = ?1 AND inbox.account = ?2",
            )?;
            let mut reactions = conn.prepare_cached(
                "SELECT reactor, emoji FROM reactions WHERE account = ?1 AND message_id = ?2 \
                 ORDER BY at",
            )?;
            for seq in seqs {
                let Some((id, reply_to, edited, revoked, media, body, path)) = row
                    .query_map(params![seq, account], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, bool>(2)?,
                            r.get::<_, bool>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<String>>(5)?,
                            r.get::<_, Option<String>>(6)?,
                        ))
                    })?
                    .next()
                    .transpose()?
                else {
                    continue;
                };
                let reactions: Vec<Reaction> = reactions
                    .query_map(params![account, id], |r| {
                        Ok(Reaction {
                            reactor: r.get(0)?,
                            emoji: r.get(1)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let notes = Annotations {
                    // Written by this walinkd from its own type: unreadable
                    // JSON would be damage, and shows as no metadata.
                    media: media
                        .and_then(|m| serde_json::from_str::<MediaMeta>(&m).ok())
                        .map(|m| MediaMeta { path, ..m }),
                    reply_to,
                    edited,
                    revoked,
                    current_text: (edited || revoked).then_some(body),
                    reactions,
                };
                if notes != Annotations::default() {
                    found.insert(seq, notes);
                }
            }
            Ok(found)
        })
        .await
    }
}
