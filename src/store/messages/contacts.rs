//! People: the contacts table (LID ↔ phone number, push name) and the
//! rule that files every message under one conversation per person.
//!
//! A person's conversation is keyed by their phone-number JID when the
//! number is known, else by their LID JID; a group's by its JID. When a
//! mapping joins a LID to a number, what was filed under the LID moves to
//! the number in the same transaction, so no reader ever sees one person
//! as two chats once walink knows they are one.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::sql::{insert_inbound, insert_outgoing, outgoing};
use super::{Counts, DeliveryStatus, Enqueued, Inbound, InboxRecord, MessageStore, OutboxRecord};

const PN_SERVER: &str = "s.whatsapp.net";
const LID_SERVER: &str = "lid";

/// An address reduced to the person or group behind it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A LID user (the digits before `@lid`).
    Lid(String),
    /// A phone number (digits).
    Phone(String),
    /// Anything else (a group, a broadcast list): its own conversation.
    Other(String),
}

impl Address {
    /// The address as a JID without a device.
    pub fn jid(&self) -> String {
        match self {
            Address::Lid(user) => format!("{user}@{LID_SERVER}"),
            Address::Phone(user) => format!("{user}@{PN_SERVER}"),
            Address::Other(jid) => jid.clone(),
        }
    }
}

/// What a message or a usync answer says about one person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    pub lid: Option<String>,
    pub phone: Option<String>,
    /// The push name the person set, if this sighting carries it.
    pub name: Option<String>,
}

/// One person of the contacts table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub lid: Option<String>,
    pub phone: Option<String>,
    pub name: Option<String>,
    /// Unix milliseconds of the last change.
    pub updated_at: u64,
}

/// A message to queue: a text (maybe a reply) or a reaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Draft {
    pub id: String,
    /// The JID it goes out to.
    pub to: String,
    /// The text, or a reaction's emoji (empty takes a reaction back).
    pub text: String,
    pub idempotency_key: Option<String>,
    /// The id of the message it answers.
    pub reply_to: Option<String>,
    /// The id of the message it reacts to.
    pub react_to: Option<String>,
    /// The file it carries; the text is then its caption.
    pub media: Option<super::MediaDraft>,
    /// The id of a message this account sent that this one edits (the
    /// text is the new text).
    pub edit_of: Option<String>,
    /// The id of a message this account sent that this one deletes for
    /// everyone.
    pub revoke_of: Option<String>,
}

/// What an outbox message answers or reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub reply_to: Option<String>,
    pub react_to: Option<String>,
    pub edit_of: Option<String>,
    pub revoke_of: Option<String>,
    /// The sender of that message and whether it was this account, when
    /// walink has it.
    pub sender: Option<String>,
    pub from_me: bool,
    /// Its text, for the quote a reply carries.
    pub text: Option<String>,
}

/// A received message and what filing it needs: the address of its chat
/// and the people it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToFile {
    pub message: Inbound,
    pub chat: Address,
    pub people: Vec<Sighting>,
    /// The id of the message this one answers.
    pub reply_to: Option<String>,
    /// Set when the message changes another instead of joining the history.
    pub change: Option<super::Change>,
    pub media: Option<super::MediaMeta>,
    /// What fetching the file needs, when the message carries one.
    pub fetch: Option<super::MediaRef>,
}

impl MessageStore {
    /// Files received messages under their people's conversations, learning
    /// what they say about who is who first, and returns once on disk with
    /// the records that were new (see [`MessageStore::store_inbound`]).
    pub async fn file_inbound(
        &self,
        batch: Vec<ToFile>,
        now_ms: u64,
    ) -> Result<Vec<InboxRecord>, super::StoreError> {
        let keep_revoked_text = self.keep_revoked_text;
        self.write(true, "store received messages", move |conn, account| {
            let mut stored = Vec::new();
            for ToFile {
                mut message,
                chat,
                people,
                reply_to,
                change,
                media,
                fetch,
            } in batch
            {
                for person in &people {
                    learn(conn, account, person, now_ms)?;
                }
                if let Some(change) = change {
                    // The sender as the change named it, and in its other forms.
                    let mut senders = vec![message.sender.clone()];
                    for person in &people {
                        senders.extend(person.lid.clone().map(|l| Address::Lid(l).jid()));
                        senders.extend(person.phone.clone().map(|p| Address::Phone(p).jid()));
                    }
                    super::changes::apply(
                        conn,
                        account,
                        &senders,
                        &change,
                        now_ms,
                        keep_revoked_text,
                    )?;
                    continue;
                }
                message.chat = chat_key(conn, account, &chat)?;
                if let Some(seq) = insert_inbound(conn, account, &message, now_ms)? {
                    if let Some(reply_to) = &reply_to {
                        super::changes::set_reply_to(conn, seq, reply_to)?;
                    }
                    if let Some(media) = &media {
                        super::changes::set_media(conn, seq, media)?;
                    }
                    if let Some(fetch) = &fetch {
                        super::media::insert(conn, seq, fetch)?;
                    }
                    stored.push(InboxRecord {
                        seq,
                        received_at: now_ms,
                        message,
                    });
                }
            }
            Ok(stored)
        })
        .await
    }

    /// Records what is now known about people (a usync answer, the
    /// library's LID-PN store) and merges their conversations.
    pub async fn learn(&self, people: Vec<Sighting>, now_ms: u64) -> Result<(), super::StoreError> {
        self.write(false, "record contacts", move |conn, account| {
            for person in &people {
                learn(conn, account, person, now_ms)?;
            }
            Ok(())
        })
        .await
    }

    /// Queues `draft` and files it, in one durable commit: a text in the
    /// history of `chat`'s conversation as sent by `own` (the account's
    /// JID), a reaction on the message it reacts to. A message already
    /// queued under its id is returned unchanged and filed once.
    pub async fn send_filed(
        &self,
        draft: Draft,
        chat: Address,
        own: &str,
        now_ms: u64,
    ) -> Result<Enqueued, super::StoreError> {
        let record = OutboxRecord {
            seq: 0,
            id: draft.id.clone(),
            to: draft.to.clone(),
            text: draft.text.clone(),
            created_at: now_ms,
            updated_at: now_ms,
            status: DeliveryStatus::Queued,
            attempts: 0,
            last_error: None,
            idempotency_key: draft.idempotency_key.clone(),
        };
        let own = own.to_owned();
        let keep_revoked_text = self.keep_revoked_text;
        let enqueued = self
            .write(true, "queue a message", move |conn, account| {
                let Some(seq) = insert_outgoing(conn, account, &record)? else {
                    return Ok(Enqueued {
                        record: outgoing(conn, account, &record.id)?
                            .ok_or(rusqlite::Error::QueryReturnedNoRows)?,
                        created: false,
                    });
                };
                let change = match (&draft.edit_of, &draft.revoke_of) {
                    (Some(id), _) => Some(super::Change::Edit {
                        id: id.clone(),
                        text: Some(record.text.clone()),
                    }),
                    (None, Some(id)) => Some(super::Change::Revoke { id: id.clone() }),
                    (None, None) => None,
                };
                if draft.reply_to.is_some() || draft.react_to.is_some() || change.is_some() {
                    conn.prepare_cached(
                        "INSERT INTO outbox_context (account, id, reply_to, react_to, edit_of, \
                         revoke_of) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        account,
                        record.id,
                        draft.reply_to,
                        draft.react_to,
                        draft.edit_of,
                        draft.revoke_of
                    ])?;
                }
                if let Some(change) = change {
                    super::changes::apply(
                        conn,
                        account,
                        &[own],
                        &change,
                        now_ms,
                        keep_revoked_text,
                    )?;
                    return Ok(Enqueued {
                        record: OutboxRecord { seq, ..record },
                        created: true,
                    });
                }
                if let Some(media) = &draft.media {
                    super::media_out::insert(conn, account, &record.id, media)?;
                }
                if let Some(target) = &draft.react_to {
                    let react = super::Change::React {
                        id: target.clone(),
                        emoji: record.text.clone(),
                    };
                    super::changes::apply(conn, account, &[own], &react, now_ms, false)?;
                } else {
                    let sent = Inbound {
                        id: record.id.clone(),
                        chat: chat_key(conn, account, &chat)?,
                        sender: own,
                        from_me: true,
                        timestamp: (now_ms / 1000) as i64,
                        text: (draft.media.is_none() || !record.text.is_empty())
                            .then(|| record.text.clone()),
                        description: draft.media.as_ref().map(|m| m.media.kind.as_str().into()),
                    };
                    if let Some(seq) = insert_inbound(conn, account, &sent, now_ms)? {
                        if let Some(reply_to) = &draft.reply_to {
                            super::changes::set_reply_to(conn, seq, reply_to)?;
                        }
                        if let Some(media) = &draft.media {
                            super::changes::set_media(conn, seq, &media.media.meta())?;
                        }
                    }
                }
                Ok(Enqueued {
                    record: OutboxRecord { seq, ..record },
                    created: true,
                })
            })
            .await?;
        if enqueued.created {
            Counts::add(&self.counts.queued, 1);
        }
        Ok(enqueued)
    }

    /// The conversation key `address` is filed under right now.
    pub async fn chat_key(&self, address: Address) -> Result<String, super::StoreError> {
        self.read("look up a contact", move |conn, account| {
            chat_key(conn, account, &address)
        })
        .await
    }

    /// Every contact of the account, in the order walink met them.
    pub async fn contacts(&self) -> Result<Vec<Contact>, super::StoreError> {
        self.read("list contacts", |conn, account| {
            conn.prepare_cached(
                "SELECT lid, phone, name, updated_at FROM contacts WHERE account = ?1 \
                 ORDER BY rowid",
            )?
            .query_map([account], |row| {
                Ok(Contact {
                    lid: row.get(0)?,
                    phone: row.get(1)?,
                    name: row.get(2)?,
                    updated_at: row.get(3)?,
                })
            })?
            .collect()
        })
        .await
    }

    /// Keeps the subjects of the groups the server listed (JID, subject).
    pub async fn save_groups(
        &self,
        groups: Vec<(String, String)>,
        now_ms: u64,
    ) -> Result<(), super::StoreError> {
        self.write(false, "record groups", move |conn, account| {
            let mut upsert = conn.prepare_cached(
                "INSERT INTO groups (account, jid, subject, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (account, jid) DO UPDATE SET subject = excluded.subject, \
                 updated_at = excluded.updated_at",
            )?;
            for (jid, subject) in &groups {
                upsert.execute(params![account, jid, subject, now_ms])?;
            }
            Ok(())
        })
        .await
    }

    /// The subject of each group walinkd has seen listed, by JID.
    pub async fn group_subjects(&self) -> Result<HashMap<String, String>, super::StoreError> {
        self.read("list groups", |conn, account| {
            conn.prepare_cached("SELECT jid, subject FROM groups WHERE account = ?1")?
                .query_map([account], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .await
    }

    /// The outbox status of each of `ids` that is an outbox message.
    pub async fn statuses(
        &self,
        ids: Vec<String>,
    ) -> Result<HashMap<String, DeliveryStatus>, super::StoreError> {
        self.read("read message statuses", move |conn, account| {
            let mut found = HashMap::new();
            for id in ids {
                if let Some(record) = outgoing(conn, account, &id)? {
                    found.insert(id, record.status);
                }
            }
            Ok(found)
        })
        .await
    }
}

/// The conversation `address` belongs to: a LID whose number is known is
/// filed under the number.
/// What outbox message `id` answers, reacts to, edits or deletes, with
/// who sent that message, for building it on the wire.
pub(super) fn context(
    conn: &Connection,
    account: &str,
    id: &str,
) -> rusqlite::Result<Option<Context>> {
    type Row = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let found: Option<Row> = conn
        .prepare_cached(
            "SELECT reply_to, react_to, edit_of, revoke_of FROM outbox_context \
             WHERE account = ?1 AND id = ?2",
        )?
        .query_row(params![account, id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((reply_to, react_to, edit_of, revoke_of)) = found else {
        return Ok(None);
    };
    let target = [&reply_to, &react_to, &edit_of, &revoke_of]
        .into_iter()
        .find_map(|t| t.clone())
        .unwrap_or_default();
    let quoted: Option<(String, bool, Option<String>)> = conn
        .prepare_cached(
            "SELECT sender, from_me, body FROM inbox WHERE account = ?1 AND id = ?2 LIMIT 1",
        )?
        .query_row(params![account, target], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let (sender, from_me, text) = match quoted {
        Some((sender, from_me, text)) => (Some(sender), from_me, text),
        None => (None, false, None),
    };
    Ok(Some(Context {
        reply_to,
        react_to,
        edit_of,
        revoke_of,
        sender,
        from_me,
        text,
    }))
}

fn chat_key(conn: &Connection, account: &str, address: &Address) -> rusqlite::Result<String> {
    if let Address::Lid(lid) = address {
        let phone: Option<String> = conn
            .prepare_cached(
                "SELECT phone FROM contacts WHERE account = ?1 AND lid = ?2 AND phone IS NOT NULL",
            )?
            .query_row(params![account, lid], |row| row.get(0))
            .optional()?;
        if let Some(phone) = phone {
            return Ok(Address::Phone(phone).jid());
        }
    }
    Ok(address.jid())
}

/// Folds one sighting into the contacts table: a row known by its LID and
/// one known by its number become one row when a sighting names both.
fn learn(conn: &Connection, account: &str, person: &Sighting, now_ms: u64) -> rusqlite::Result<()> {
    let find =
        |column: &str, value: &Option<String>| -> rusqlite::Result<Option<(i64, Option<String>)>> {
            let Some(value) = value else { return Ok(None) };
            conn.prepare_cached(&format!(
                "SELECT rowid, name FROM contacts WHERE account = ?1 AND {column} = ?2"
            ))?
            .query_row(params![account, value], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
        };
    let by_lid = find("lid", &person.lid)?;
    let by_phone = find("phone", &person.phone)?;
    let keep = match (by_lid, by_phone) {
        (None, None) => {
            if person.lid.is_none() && person.phone.is_none() {
                return Ok(());
            }
            conn.prepare_cached(
                "INSERT INTO contacts (account, lid, phone, name, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                account,
                person.lid,
                person.phone,
                person.name,
                now_ms
            ])?;
            None
        }
        (Some((a, _)), Some((b, _))) if a == b => Some((a, None)),
        (Some((a, _)), Some((b, b_name))) => {
            conn.prepare_cached("DELETE FROM contacts WHERE rowid = ?1")?
                .execute([b])?;
            Some((a, b_name))
        }
        (Some((row, _)), None) | (None, Some((row, _))) => Some((row, None)),
    };
    if let Some((row, other_name)) = keep {
        conn.prepare_cached(
            "UPDATE contacts SET lid = coalesce(?2, lid), phone = coalesce(?3, phone), \
             name = coalesce(?4, name, ?5), updated_at = ?6 WHERE rowid = ?1 AND \
             (lid IS NOT coalesce(?2, lid) OR phone IS NOT coalesce(?3, phone) \
              OR name IS NOT coalesce(?4, name, ?5))",
        )?
        .execute(params![
            row,
            person.lid,
            person.phone,
            person.name,
            other_name,
            now_ms
        ])?;
    }
    if let (Some(lid), Some(phone)) = (&person.lid, &person.phone) {
        merge_conversation(conn, account, lid, phone)?;
    }
    Ok(())
}

/// Moves what was filed under `lid` to the conversation of `phone`.
fn merge_conversation(
    conn: &Connection,
    account: &str,
    lid: &str,
    phone: &str,
) -> rusqlite::Result<()> {
    let from = Address::Lid(lid.to_owned()).jid();
    let to = Address::Phone(phone.to_owned()).jid();
    let filed: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM chats WHERE account = ?1 AND chat = ?2")?
        .query_row(params![account, from], |row| row.get(0))
        .optional()?;
    if filed.is_none() {
        return Ok(());
    }
    // A message filed under both (the same id from the same sender) is
    // kept once, under the number.
    conn.prepare_cached("UPDATE OR IGNORE inbox SET chat = ?3 WHERE account = ?1 AND chat = ?2")?
        .execute(params![account, from, to])?;
    conn.prepare_cached("DELETE FROM inbox WHERE account = ?1 AND chat = ?2")?
        .execute(params![account, from])?;
    conn.prepare_cached("DELETE FROM chats WHERE account = ?1 AND chat IN (?2, ?3)")?
        .execute(params![account, from, to])?;
    conn.prepare_cached(
        "INSERT INTO chats (account, chat, count, last_timestamp, last_seq) \
         SELECT account, chat, count(*), \
                (SELECT sent_at FROM inbox WHERE account = ?1 AND chat = ?2 \
                 ORDER BY seq DESC LIMIT 1), max(seq) \
         FROM inbox WHERE account = ?1 AND chat = ?2 GROUP BY account, chat",
    )?
    .execute(params![account, to])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MessageDb, messages_db_path};

    fn open(dir: &tempfile::TempDir) -> MessageStore {
        MessageDb::open(&messages_db_path(dir.path()), None)
            .unwrap()
            .account("sales")
            .unwrap()
    }

    fn from_lid(id: &str, lid: &str, phone: Option<&str>) -> ToFile {
        ToFile {
            message: Inbound {
                id: id.into(),
                chat: format!("{lid}@lid"),
                sender: format!("{lid}@lid"),
                from_me: false,
                timestamp: 1,
                text: Some(id.into()),
                description: None,
            },
            chat: Address::Lid(lid.into()),
            people: vec![Sighting {
                lid: Some(lid.into()),
                phone: phone.map(str::to_owned),
                name: None,
            }],
            reply_to: None,
            change: None,
            media: None,
            fetch: None,
        }
    }

    fn person(lid: Option<&str>, phone: Option<&str>, name: Option<&str>) -> Sighting {
        Sighting {
            lid: lid.map(str::to_owned),
            phone: phone.map(str::to_owned),
            name: name.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn a_late_mapping_merges_chats_and_contacts() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store
            .file_inbound(
                vec![from_lid("a", "1000", None), from_lid("b", "1000", None)],
                1,
            )
            .await
            .unwrap();
        store
            .learn(vec![person(None, Some("555"), Some("Ann"))], 2)
            .await
            .unwrap();
        let chats = store.chats().await.unwrap();
        assert_eq!(chats.len(), 1);
        assert_eq!((chats[0].chat.as_str(), chats[0].count), ("1000@lid", 2));
        assert_eq!(
            store.contacts().await.unwrap().len(),
            2,
            "not yet one person"
        );

        store
            .learn(vec![person(Some("1000"), Some("555"), None)], 3)
            .await
            .unwrap();
        let contacts = store.contacts().await.unwrap();
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        assert_eq!(contacts[0].lid.as_deref(), Some("1000"));
        assert_eq!(contacts[0].phone.as_deref(), Some("555"));
        assert_eq!(
            contacts[0].name.as_deref(),
            Some("Ann"),
            "the name survives the merge"
        );
        let chats = store.chats().await.unwrap();
        assert_eq!(chats.len(), 1);
        assert_eq!(
            (chats[0].chat.as_str(), chats[0].count),
            ("555@s.whatsapp.net", 2)
        );
        let page = store
            .messages(Some("555@s.whatsapp.net"), None, None, 10)
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 2);

        // Later LID-addressed messages go straight to the number.
        store
            .file_inbound(vec![from_lid("c", "1000", None)], 4)
            .await
            .unwrap();
        let chats = store.chats().await.unwrap();
        assert_eq!((chats.len(), chats[0].count), (1, 3));
        assert_eq!(
            store.chat_key(Address::Lid("1000".into())).await.unwrap(),
            "555@s.whatsapp.net"
        );
    }

    #[tokio::test]
    async fn a_message_filed_twice_is_kept_once_after_the_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut by_number = from_lid("same", "1000", None);
        by_number.chat = Address::Phone("555".into());
        store
            .file_inbound(vec![from_lid("same", "1000", None), by_number], 1)
            .await
            .unwrap();
        assert_eq!(store.chats().await.unwrap().len(), 2);
        store
            .learn(vec![person(Some("1000"), Some("555"), None)], 2)
            .await
            .unwrap();
        let chats = store.chats().await.unwrap();
        assert_eq!(chats.len(), 1);
        assert_eq!(chats[0].count, 1);
        let page = store.messages(None, None, None, 10).await.unwrap();
        assert_eq!(page.messages.len(), 1);
    }

    #[tokio::test]
    async fn a_send_is_filed_once_under_its_person() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store
            .learn(vec![person(Some("1000"), Some("555"), None)], 1)
            .await
            .unwrap();
        for _ in 0..2 {
            let draft = Draft {
                id: "m1".into(),
                to: "1000@lid".into(),
                text: "hi".into(),
                idempotency_key: Some("k".into()),
                ..Draft::default()
            };
            store
                .send_filed(draft, Address::Lid("1000".into()), "1@s.whatsapp.net", 5000)
                .await
                .unwrap();
        }
        let page = store
            .messages(Some("555@s.whatsapp.net"), None, None, 10)
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 1);
        assert!(page.messages[0].message.from_me);
        assert_eq!(page.messages[0].message.timestamp, 5);
        assert_eq!(store.pending().await.unwrap()[0].to, "1000@lid");
        let statuses = store
            .statuses(vec!["m1".into(), "other".into()])
            .await
            .unwrap();
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses["m1"], DeliveryStatus::Queued);
        assert_eq!(store.counts().queued, 1);
    }

    #[tokio::test]
    async fn retention_takes_reactions_and_send_context_with_their_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut react = from_lid("r", "1000", None);
        react.change = Some(super::super::Change::React {
            id: "a".into(),
            emoji: "👍".into(),
        });
        store
            .file_inbound(vec![from_lid("a", "1000", None), react], 1)
            .await
            .unwrap();
        let draft = Draft {
            id: "m1".into(),
            to: "1000@lid".into(),
            text: "yes".into(),
            reply_to: Some("a".into()),
            ..Draft::default()
        };
        store
            .send_filed(draft, Address::Lid("1000".into()), "1@s.whatsapp.net", 2)
            .await
            .unwrap();
        store
            .advance("m1", DeliveryStatus::ServerAck, None, 3)
            .await
            .unwrap();
        let seqs: Vec<u64> = store
            .messages(None, None, None, 10)
            .await
            .unwrap()
            .messages
            .iter()
            .map(|r| r.seq)
            .collect();
        let notes = store.annotations(seqs).await.unwrap();
        assert_eq!(notes.len(), 2, "a reaction and a reply: {notes:?}");
        let sendable = store.sendable("m1").await.unwrap().unwrap();
        assert!(sendable.context.is_some());

        let retention = crate::store::Retention {
            max_age: None,
            max_messages: Some(0),
        };
        store.prune(retention, 4).await.unwrap();
        let left = store
            .read("count", |conn, _| {
                conn.query_row(
                    "SELECT (SELECT count(*) FROM reactions) + (SELECT count(*) FROM outbox_context)",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(left, 0);
    }
}
