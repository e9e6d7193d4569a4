//! One account's durable messages: the outbox (what `send` accepted and has
//! not finished with) and the inbox (every message received, with history).
//!
//! They live in `messages.db` (SQLite, see [`database`] and [`schema`]),
//! never in the sled state database: a restore of the session touches no
//! message. All accounts share the file and its writer, so concurrent sends
//! on any account share one commit.
//!
//! Sequences only grow (AUTOINCREMENT), so "newest first, before CURSOR"
//! pages stay correct while messages arrive: a new message gets a larger
//! sequence than any cursor already handed out.

mod changes;
mod contacts;
mod database;
mod library;
mod media;
mod media_out;
mod schema;
mod sql;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::error::StoreError;
pub use changes::{Annotations, Change, MediaMeta, Reaction};
pub use contacts::{Address, Contact, Context, Draft, Sighting, ToFile};
use database::sqlite_error;
pub use database::{MessageDb, messages_db_path};
#[cfg(test)]
pub(crate) use library::MAX_SENT_COPIES;
pub use media::{MediaLookup, MediaRef, StoredMedia};
pub use media_out::{MediaDraft, MediaKind, OutgoingMedia, Uploaded};
use sql::{
    FAILED, INBOX_COLUMNS, OUTBOX_COLUMNS, PENDING, PENDING_TEXTS, QUEUED, fts_query, inbox_row,
    insert_inbound, insert_outgoing, outbox_row, outgoing, outgoing_where, prune, sendable,
};

/// Where a sent message is. Statuses only move forward (see [`Self::rank`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeliveryStatus {
    /// Durable, waiting for a connection.
    Queued,
    /// Written to the connection; no server ack yet.
    Sent,
    ServerAck,
    Delivered,
    Read,
    /// Given up on; `last_error` says why.
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::ServerAck => "server_ack",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Queued,
            DeliveryStatus::Sent,
            DeliveryStatus::ServerAck,
            DeliveryStatus::Delivered,
            DeliveryStatus::Read,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Queued => 0,
            DeliveryStatus::Sent => 1,
            DeliveryStatus::ServerAck => 2,
            DeliveryStatus::Delivered => 3,
            DeliveryStatus::Read => 4,
            DeliveryStatus::Failed => 5,
        }
    }

    /// Still the outbox's job: not acked by the server, not given up on.
    pub fn is_pending(self) -> bool {
        matches!(self, DeliveryStatus::Queued | DeliveryStatus::Sent)
    }

    /// Whether moving from `self` to `next` is progress. A receipt can
    /// overtake the server ack, and a late ack must not undo a receipt;
    /// only a message still pending can fail.
    fn may_become(self, next: DeliveryStatus) -> bool {
        match next {
            DeliveryStatus::Failed => self.is_pending(),
            _ => self != DeliveryStatus::Failed && next.rank() > self.rank(),
        }
    }
}

/// One message of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub seq: u64,
    /// The WhatsApp message id; every (re)send uses it.
    pub id: String,
    /// Recipient JID.
    pub to: String,
    pub text: String,
    /// Unix milliseconds.
    pub created_at: u64,
    pub updated_at: u64,
    pub status: DeliveryStatus,
    /// Times it was written to a connection or failed to be.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The client's idempotency key, when it gave one.
    pub idempotency_key: Option<String>,
}

impl super::codec::Record for OutboxRecord {
    const NAME: &'static str = "outbox message";
    const VERSION: u8 = 1;
}

/// A message as received, before it has a place in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    pub id: String,
    pub chat: String,
    pub sender: String,
    pub from_me: bool,
    /// When the sender sent it (Unix seconds).
    pub timestamp: i64,
    pub text: Option<String>,
    /// What it is when it is not text ("image", …).
    pub description: Option<String>,
}

/// One message of the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRecord {
    /// Arrival order; the pagination cursor.
    pub seq: u64,
    /// When walink stored it (Unix milliseconds); retention counts from here.
    pub received_at: u64,
    pub message: Inbound,
}

/// One chat of the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSummary {
    pub chat: String,
    pub count: u64,
    /// Sender's timestamp of the newest message (Unix seconds).
    pub last_timestamp: i64,
    pub last_seq: u64,
}

/// An outbox message with what putting it on the wire needs, read
/// together so a send costs one trip to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sendable {
    pub record: OutboxRecord,
    /// What it answers, reacts to, edits or deletes.
    pub context: Option<Context>,
    /// The file it carries.
    pub media: Option<OutgoingMedia>,
}

/// Result of [`MessageStore::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub record: OutboxRecord,
    /// False when a message with this id was already in the outbox: the
    /// stored one is returned and nothing new was queued.
    pub created: bool,
}

/// One page of the inbox, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<InboxRecord>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next_cursor: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Queued or sent, waiting for the server's ack.
    pub queued: u64,
    pub failed: u64,
}

/// How much of the history to keep; `None` keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_messages: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub inbox: u64,
    pub outbox: u64,
}

/// Outbox counts of one account, kept in memory (status and metrics read
/// them all the time) and moved only after a commit.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    queued: AtomicU64,
    failed: AtomicU64,
    /// Not the outbox's: the library's copies of sends (see `library.rs`).
    sent_copies: library::SentCopies,
}

impl Counts {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::AcqRel);
    }

    fn sub(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(v.saturating_sub(n))
        });
    }

    /// A record moved from `old` to `new`.
    fn moved(&self, old: DeliveryStatus, new: DeliveryStatus) {
        if old.is_pending() && !new.is_pending() {
            Counts::sub(&self.queued, 1);
        }
        if new == DeliveryStatus::Failed && old != DeliveryStatus::Failed {
            Counts::add(&self.failed, 1);
        }
    }

    /// Counts a committed [`status_change`] and returns its record.
    fn settle(&self, changed: Changed) -> Option<OutboxRecord> {
        changed.map(|(old, record)| {
            self.moved(old, record.status);
            record
        })
    }
}

const STATUS_OP: &str = "update a message's status";

/// The change [`MessageStore::advance`] makes to a record, when it is
/// progress.
fn advancing(
    status: DeliveryStatus,
    error: Option<String>,
) -> impl FnOnce(&mut OutboxRecord) -> bool + Send + 'static {
    move |record| {
        if !record.status.may_become(status) {
            return false;
        }
        record.status = status;
        if status == DeliveryStatus::Sent {
            record.attempts += 1;
        }
        if error.is_some() {
            record.last_error = error;
        }
        true
    }
}

/// What a status change did: the status before and the record after, or
/// `None` when the change declined.
type Changed = Option<(DeliveryStatus, OutboxRecord)>;

/// The job that applies `change` to message `id`'s record.
fn status_change(
    id: &str,
    now_ms: u64,
    change: impl FnOnce(&mut OutboxRecord) -> bool + Send + 'static,
) -> impl FnOnce(&Connection, &str) -> rusqlite::Result<Changed> + Send + 'static {
    let id = id.to_owned();
    move |conn, account| {
        let Some(mut record) = outgoing(conn, account, &id)? else {
            return Ok(None);
        };
        let old = record.status;
        if !change(&mut record) {
            return Ok(None);
        }
        record.updated_at = now_ms;
        conn.prepare_cached(
            "UPDATE outbox SET status = ?1, attempts = ?2, last_error = ?3, \
             updated_at = ?4 WHERE seq = ?5",
        )?
        .execute(params![
            record.status.as_str(),
            record.attempts,
            record.last_error,
            record.updated_at,
            record.seq
        ])?;
        if old.is_pending() && !record.status.is_pending() {
            media_out::release(conn, account, &record.id)?;
        }
        Ok(Some((old, record)))
    }
}

impl MessageDb {
    /// The outbox and inbox of account `name`.
    pub fn account(self: &Arc<Self>, name: &str) -> Result<MessageStore, StoreError> {
        super::db::validate_account_name(name)?;
        let counts = self.counts_of(name, |conn| {
            let count = |filter: &str| -> rusqlite::Result<u64> {
                conn.query_row(
                    &format!("SELECT count(*) FROM outbox WHERE account = ?1 AND {filter}"),
                    [name],
                    |row| row.get(0),
                )
            };
            Ok(Counts {
                queued: AtomicU64::new(count(PENDING)?),
                failed: AtomicU64::new(count(FAILED)?),
                sent_copies: Default::default(),
            })
        })?;
        Ok(MessageStore {
            account: name.to_owned(),
            db: self.clone(),
            counts,
            keep_revoked_text: false,
        })
    }
}

/// The outbox and inbox of one account. Obtain it from
/// [`MessageDb::account`]; every store of one account shares its counts.
#[derive(Clone)]
pub struct MessageStore {
    account: String,
    db: Arc<MessageDb>,
    counts: Arc<Counts>,
    /// A deletion for everyone keeps the message's text (marked revoked)
    /// instead of dropping it.
    keep_revoked_text: bool,
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl MessageStore {
    /// This store, keeping the text of a message deleted for everyone when
    /// `keep` (the account's `keep_revoked_text`).
    pub fn keeping_revoked_text(mut self, keep: bool) -> Self {
        self.keep_revoked_text = keep;
        self
    }

    /// The storage fault that stops writes right now (`disk full: …`).
    pub fn fault(&self) -> Option<String> {
        self.db.fault()
    }

    /// Runs a write for this account in the writer's next commit.
    async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        op: &'static str,
        work: impl FnOnce(&Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let account = self.account.clone();
        let path = self.db.path().to_owned();
        self.db
            .write(durable, move |conn| {
                work(conn, &account).map_err(|e| sqlite_error(&path, op, &e))
            })
            .await
    }

    async fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        work: impl FnOnce(&Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let account = self.account.clone();
        let path = self.db.path().to_owned();
        self.db
            .read(move |conn| work(conn, &account).map_err(|e| sqlite_error(&path, op, &e)))
            .await
    }

    // -----------------------------------------------------------------------
    // Outbox

    /// Queues a message under `id` and returns once it is on disk. A message
    /// already stored under `id` is returned unchanged instead (a retried
    /// send with the same idempotency key).
    pub async fn enqueue(
        &self,
        id: &str,
        to: &str,
        text: &str,
        idempotency_key: Option<&str>,
        now_ms: u64,
    ) -> Result<Enqueued, StoreError> {
        let mut record = OutboxRecord {
            seq: 0,
            id: id.to_owned(),
            to: to.to_owned(),
            text: text.to_owned(),
            created_at: now_ms,
            updated_at: now_ms,
            status: DeliveryStatus::Queued,
            attempts: 0,
            last_error: None,
            idempotency_key: idempotency_key.map(str::to_owned),
        };
        let enqueued = self
            .write(true, "queue a message", move |conn, account| {
                if let Some(seq) = insert_outgoing(conn, account, &record)? {
                    record.seq = seq;
                    return Ok(Enqueued {
                        record,
                        created: true,
                    });
                }
                Ok(Enqueued {
                    record: outgoing(conn, account, &record.id)?
                        .ok_or(rusqlite::Error::QueryReturnedNoRows)?,
                    created: false,
                })
            })
            .await?;
        if enqueued.created {
            Counts::add(&self.counts.queued, 1);
        }
        Ok(enqueued)
    }

    /// Puts back sends that were pending when a backup generation was
    /// taken, under their ids. One the outbox still has (pending, acked or
    /// failed since) is left as it is, so nothing goes out twice. Returns
    /// how many came back.
    pub async fn requeue(&self, records: Vec<OutboxRecord>) -> Result<u64, StoreError> {
        let added = self
            .write(true, "put back pending messages", move |conn, account| {
                let mut added = 0;
                for record in records.iter().filter(|r| r.status.is_pending()) {
                    added += u64::from(insert_outgoing(conn, account, record)?.is_some());
                }
                Ok(added)
            })
            .await?;
        Counts::add(&self.counts.queued, added);
        Ok(added)
    }

    /// The outbox message with WhatsApp id `id`.
    pub async fn outgoing(&self, id: &str) -> Result<Option<OutboxRecord>, StoreError> {
        let id = id.to_owned();
        self.read("read a message", move |conn, account| {
            outgoing(conn, account, &id)
        })
        .await
    }

    /// Queued and sent-but-unacked messages, oldest first: what a connection
    /// has to (re)send.
    pub async fn pending(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.outgoing_where(PENDING, "ASC", None).await
    }

    /// [`Self::pending`] as a backup generation carries it: the sends its
    /// records hold whole. A file (its bytes are not in the record), a
    /// reaction, an edit or a deletion (put back without its context, its
    /// text would go out as a message of its own) are left out.
    pub async fn pending_texts(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.outgoing_where(PENDING_TEXTS, "ASC", None).await
    }

    /// What a connection has to send, oldest first, each message with
    /// what sending it needs, in one read: with `unacked` every pending
    /// message (sent on an earlier connection without an ack, or not yet),
    /// else only those not yet written to any connection.
    pub async fn to_send(&self, unacked: bool) -> Result<Vec<Sendable>, StoreError> {
        let filter = if unacked { PENDING } else { QUEUED };
        self.read("list messages to send", move |conn, account| {
            outgoing_where(conn, account, filter, "ASC", -1)?
                .into_iter()
                .map(|record| sendable(conn, account, record))
                .collect()
        })
        .await
    }

    /// Outbox message `id` with what sending it (again) needs, in one read.
    pub async fn sendable(&self, id: &str) -> Result<Option<Sendable>, StoreError> {
        let id = id.to_owned();
        self.read("read a message", move |conn, account| {
            outgoing(conn, account, &id)?
                .map(|record| sendable(conn, account, record))
                .transpose()
        })
        .await
    }

    /// Messages the server acked but no recipient confirmed yet, among the
    /// newest `among` of the outbox and created at or after `since_ms`,
    /// oldest first, each with what sending it again needs.
    pub async fn unconfirmed(
        &self,
        among: usize,
        since_ms: u64,
    ) -> Result<Vec<Sendable>, StoreError> {
        self.read("list messages", move |conn, account| {
            let records: Vec<OutboxRecord> = conn
                .prepare_cached(&format!(
                    "SELECT * FROM (SELECT {OUTBOX_COLUMNS} FROM outbox WHERE account = ?1                  ORDER BY seq DESC LIMIT ?2)                  WHERE status = 'server_ack' AND created_at >= ?3 ORDER BY seq ASC"
                ))?
                .query_map(params![account, among as i64, since_ms as i64], outbox_row)?
                .collect::<rusqlite::Result<_>>()?;
            records
                .into_iter()
                .map(|record| sendable(conn, account, record))
                .collect()
        })
        .await
    }

    /// Messages given up on, oldest first.
    pub async fn failed(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.outgoing_where(FAILED, "ASC", None).await
    }

    /// Every outbox message, newest first, at most `limit`.
    pub async fn recent_outgoing(&self, limit: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        self.outgoing_where("1", "DESC", Some(limit)).await
    }

    async fn outgoing_where(
        &self,
        filter: &'static str,
        order: &'static str,
        limit: Option<usize>,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let limit = limit.map_or(-1, |l| l as i64);
        self.read("list messages", move |conn, account| {
            outgoing_where(conn, account, filter, order, limit)
        })
        .await
    }

    pub fn counts(&self) -> OutboxCounts {
        OutboxCounts {
            queued: self.counts.queued.load(Ordering::Acquire),
            failed: self.counts.failed.load(Ordering::Acquire),
        }
    }

    /// Moves message `id` to `status` when that is progress (see
    /// [`DeliveryStatus`]); returns the updated record, or `None` when
    /// nothing changed (unknown id, or not progress). `error` is kept as
    /// `last_error`. Moving to `Sent` counts an attempt.
    pub async fn advance(
        &self,
        id: &str,
        status: DeliveryStatus,
        error: Option<String>,
        now_ms: u64,
    ) -> Result<Option<OutboxRecord>, StoreError> {
        self.update(id, now_ms, advancing(status, error)).await
    }

    /// [`Self::advance`] with no error, returning once the change is queued,
    /// so the sender writes the next message meanwhile instead of waiting
    /// for a commit per message. A status change queued after this one
    /// sees it (the writer runs jobs in order). `done` gets what `advance` would
    /// return, once committed, on the writer's thread: it must not block.
    pub fn advance_behind(
        &self,
        id: &str,
        status: DeliveryStatus,
        now_ms: u64,
        done: impl FnOnce(Result<Option<OutboxRecord>, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let counts = self.counts.clone();
        let path = self.db.path().to_owned();
        let account = self.account.clone();
        let work = status_change(id, now_ms, advancing(status, None));
        self.db.write_behind(
            false,
            move |conn| work(conn, &account).map_err(|e| sqlite_error(&path, STATUS_OP, &e)),
            move |result| done(result.map(|changed| counts.settle(changed))),
        )
    }

    /// Records a failed try that will be retried: the message goes back to
    /// `Queued` (from `Queued` or `Sent`) with the reason. Returns the record.
    pub async fn retry_later(
        &self,
        id: &str,
        error: String,
        now_ms: u64,
    ) -> Result<Option<OutboxRecord>, StoreError> {
        self.update(id, now_ms, move |record| {
            if !record.status.is_pending() {
                return false;
            }
            record.status = DeliveryStatus::Queued;
            record.attempts += 1;
            record.last_error = Some(error.clone());
            true
        })
        .await
    }

    /// A status change. Not fsynced before it returns (see `database.rs`):
    /// losing one to a power cut repeats a send under the same id.
    async fn update(
        &self,
        id: &str,
        now_ms: u64,
        change: impl FnOnce(&mut OutboxRecord) -> bool + Send + 'static,
    ) -> Result<Option<OutboxRecord>, StoreError> {
        let changed = self
            .write(false, STATUS_OP, status_change(id, now_ms, change))
            .await?;
        Ok(self.counts.settle(changed))
    }

    // -----------------------------------------------------------------------
    // Inbox

    /// Stores a batch of received messages, skipping any already stored
    /// (same chat, sender and id), and returns once it is on disk. Returns
    /// the records that were new.
    pub async fn store_inbound(
        &self,
        batch: &[Inbound],
        now_ms: u64,
    ) -> Result<Vec<InboxRecord>, StoreError> {
        let batch = batch.to_vec();
        self.write(true, "store received messages", move |conn, account| {
            let mut stored = Vec::new();
            for message in batch {
                if let Some(seq) = insert_inbound(conn, account, &message, now_ms)? {
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

    /// Up to `limit` messages with a sequence below `before` (all when
    /// `None`), newest first, of one chat or of all, and with `search`
    /// only those whose text has every word of it (FTS5).
    pub async fn messages(
        &self,
        chat: Option<&str>,
        search: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let chat = chat.map(str::to_owned);
        let search = match search.map(fts_query) {
            // Nothing to look for: nothing found.
            Some(None) => {
                return Ok(Page {
                    messages: Vec::new(),
                    next_cursor: None,
                });
            }
            other => other.flatten(),
        };
        let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
        let mut messages = self
            .read("list messages", move |conn, account| {
                let mut sql = format!("SELECT {INBOX_COLUMNS} FROM inbox");
                if search.is_some() {
                    sql.push_str(" JOIN inbox_fts ON inbox_fts.rowid = inbox.seq");
                }
                sql.push_str(" WHERE inbox.account = ?1 AND inbox.seq < ?2");
                let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![
                    Box::new(account.to_owned()),
                    Box::new(before),
                    Box::new(limit as i64 + 1),
                ];
                if let Some(chat) = chat {
                    values.push(Box::new(chat));
                    sql.push_str(&format!(" AND inbox.chat = ?{}", values.len()));
                }
                if let Some(query) = search {
                    values.push(Box::new(query));
                    sql.push_str(&format!(" AND inbox_fts MATCH ?{}", values.len()));
                }
                sql.push_str(" ORDER BY inbox.seq DESC LIMIT ?3");
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(
                    rusqlite::params_from_iter(values.iter().map(|v| v.as_ref())),
                    inbox_row,
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        let next_cursor = if more {
            messages.last().map(|m| m.seq)
        } else {
            None
        };
        Ok(Page {
            messages,
            next_cursor,
        })
    }

    /// Every chat with messages, most recently active first.
    pub async fn chats(&self) -> Result<Vec<ChatSummary>, StoreError> {
        self.read("list chats", |conn, account| {
            let mut stmt = conn.prepare_cached(
                "SELECT chat, count, last_timestamp, last_seq FROM chats WHERE account = ?1 \
                 ORDER BY last_seq DESC",
            )?;
            stmt.query_map([account], |row| {
                Ok(ChatSummary {
                    chat: row.get(0)?,
                    count: row.get(1)?,
                    last_timestamp: row.get(2)?,
                    last_seq: row.get(3)?,
                })
            })?
            .collect()
        })
        .await
    }

    // -----------------------------------------------------------------------
    // Retention

    /// Deletes inbox messages and finished outbox messages beyond
    /// `retention`, oldest first. Pending outbox messages are never deleted.
    pub async fn prune(&self, retention: Retention, now_ms: u64) -> Result<Pruned, StoreError> {
        let cutoff = retention
            .max_age
            .map_or(0, |age| now_ms.saturating_sub(age.as_millis() as u64));
        let max = retention.max_messages.map_or(i64::MAX, |m| m as i64);
        let (pruned, failed) = self
            .write(false, "delete old messages", move |conn, account| {
                prune(conn, account, max, cutoff)
            })
            .await?;
        Counts::sub(&self.counts.failed, failed);
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests;
