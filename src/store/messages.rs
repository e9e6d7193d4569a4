//! One account's durable messages: the outbox (what `send` accepted and has
//! not finished with) and the inbox (every message received, with history).
//!
//! Both live in the account's own trees of the [`super::StateDb`]:
//!
//! | tree kind          | key                          | value             |
//! |--------------------|------------------------------|-------------------|
//! | `outbox`           | sequence (u64 BE)            | [`OutboxRecord`]  |
//! | `outbox_ids`       | message id                   | sequence          |
//! | `outbox_pending`   | sequence                     | empty (queued or sent, not acked) |
//! | `outbox_failed`    | sequence                     | empty             |
//! | `inbox`            | arrival sequence (u64 BE)    | [`InboxRecord`]   |
//! | `inbox_ids`        | (chat, sender, id)           | sequence          |
//! | `inbox_chats`      | (chat) ++ sequence           | empty             |
//! | `inbox_chat_stats` | chat                         | [`ChatSummary`]   |
//!
//! The outbox is written without sled transactions (each one costs two log
//! writes in sled 0.34, which bounded the send rate): a record is written
//! with single-key operations and the `outbox_pending`/`outbox_failed`
//! indexes follow it, so they are checked against the record when read and
//! repaired when the store opens after a crash between the two.
//!
//! Sequences only grow, so "newest first, before CURSOR" pages stay correct
//! while messages arrive: a new message gets a larger sequence than any
//! cursor already handed out. Sequences are allocated under a lock that is
//! held until the write commits, so they also commit in order.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::codec::{self, Record};
use super::error::{StoreError, describe_key};
use super::group_flush::GroupFlush;
use super::keys;

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

impl Record for OutboxRecord {
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

impl Record for InboxRecord {
    const NAME: &'static str = "inbox message";
    const VERSION: u8 = 1;
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

impl Record for ChatSummary {
    const NAME: &'static str = "chat summary";
    const VERSION: u8 = 1;
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

#[derive(Clone, Copy)]
enum Tree {
    Outbox,
    OutboxIds,
    OutboxPending,
    OutboxFailed,
    Inbox,
    InboxIds,
    InboxChats,
    InboxChatStats,
}

impl Tree {
    const ALL: [Tree; 8] = [
        Tree::Outbox,
        Tree::OutboxIds,
        Tree::OutboxPending,
        Tree::OutboxFailed,
        Tree::Inbox,
        Tree::InboxIds,
        Tree::InboxChats,
        Tree::InboxChatStats,
    ];

    fn name(self) -> &'static str {
        match self {
            Tree::Outbox => "outbox",
            Tree::OutboxIds => "outbox_ids",
            Tree::OutboxPending => "outbox_pending",
            Tree::OutboxFailed => "outbox_failed",
            Tree::Inbox => "inbox",
            Tree::InboxIds => "inbox_ids",
            Tree::InboxChats => "inbox_chats",
            Tree::InboxChatStats => "inbox_chat_stats",
        }
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// The outbox and inbox of one account. Obtain it from
/// [`super::StateDb::messages`]; there is one per account name.
pub struct MessageStore {
    account: String,
    flusher: Arc<GroupFlush>,
    trees: Vec<sled::Tree>,
    /// Next outbox sequence; held while an enqueue commits.
    next_out: Mutex<u64>,
    /// Next inbox sequence; held while a batch commits.
    next_in: Mutex<u64>,
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn parse_seq(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn chat_prefix(chat: &str) -> Vec<u8> {
    keys::composite(&[chat.as_bytes()])
}

fn chat_key(chat: &str, seq: u64) -> Vec<u8> {
    let mut key = chat_prefix(chat);
    key.extend_from_slice(&seq_key(seq));
    key
}

fn dedupe_key(m: &Inbound) -> Vec<u8> {
    keys::composite(&[m.chat.as_bytes(), m.sender.as_bytes(), m.id.as_bytes()])
}

impl MessageStore {
    pub(crate) fn open(
        db: &sled::Db,
        flusher: Arc<GroupFlush>,
        account: &str,
    ) -> Result<Self, StoreError> {
        let mut trees = Vec::with_capacity(Tree::ALL.len());
        for tree in Tree::ALL {
            let name = format!("acct:{account}:{}", tree.name());
            trees.push(db.open_tree(name).map_err(|source| StoreError::Sled {
                account: account.to_owned(),
                tree: tree.name(),
                op: "open the tree",
                source,
            })?);
        }
        let store = Self {
            account: account.to_owned(),
            flusher,
            trees,
            next_out: Mutex::new(0),
            next_in: Mutex::new(0),
        };
        *store
            .next_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = store.next_seq(Tree::Outbox)?;
        *store.next_in.lock().unwrap_or_else(PoisonError::into_inner) =
            store.next_seq(Tree::Inbox)?;
        store.repair_outbox()?;
        Ok(store)
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree as usize]
    }

    fn next_seq(&self, tree: Tree) -> Result<u64, StoreError> {
        let last = self
            .tree(tree)
            .last()
            .map_err(|e| self.sled(tree, "read its last key", e))?;
        Ok(last
            .and_then(|(k, _)| parse_seq(&k))
            .map_or(1, |seq| seq + 1))
    }

    fn sled(&self, tree: Tree, op: &'static str, source: sled::Error) -> StoreError {
        StoreError::Sled {
            account: self.account.clone(),
            tree: tree.name(),
            op,
            source,
        }
    }

    fn tx(&self, tree: Tree, op: &'static str, e: TransactionError<StoreError>) -> StoreError {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(source) => self.sled(tree, op, source),
        }
    }

    fn decode<R: Record>(&self, tree: Tree, key: &[u8], bytes: &[u8]) -> Result<R, StoreError> {
        codec::decode(bytes).map_err(|source| StoreError::Decode {
            account: self.account.clone(),
            tree: tree.name(),
            key: describe_key(key),
            source,
        })
    }

    fn encode<R: Record>(&self, tree: Tree, value: &R) -> Result<Vec<u8>, StoreError> {
        codec::encode(value).map_err(|source| StoreError::Encode {
            account: self.account.clone(),
            tree: tree.name(),
            source,
        })
    }

    fn tx_decode<R: Record>(&self, tree: Tree, key: &[u8], bytes: &[u8]) -> TxResult<R> {
        self.decode(tree, key, bytes)
            .map_err(ConflictableTransactionError::Abort)
    }

    fn tx_encode<R: Record>(&self, tree: Tree, value: &R) -> TxResult<Vec<u8>> {
        self.encode(tree, value)
            .map_err(ConflictableTransactionError::Abort)
    }

    /// Makes every write so far durable on disk. Concurrent callers (sends
    /// on any account) share one flush: see [`GroupFlush`].
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flusher
            .flush()
            .await
            .map_err(|source| StoreError::Database {
                op: "flush messages to disk",
                source,
            })
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
        let enqueued = self.enqueue_unflushed(id, to, text, idempotency_key, now_ms)?;
        self.flush().await?;
        Ok(enqueued)
    }

    fn enqueue_unflushed(
        &self,
        id: &str,
        to: &str,
        text: &str,
        idempotency_key: Option<&str>,
        now_ms: u64,
    ) -> Result<Enqueued, StoreError> {
        let mut next = self.next_out.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = *next;
        let record = OutboxRecord {
            seq,
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
        if let Some(existing) = self.outgoing(id)? {
            return Ok(Enqueued {
                record: existing,
                created: false,
            });
        }
        let value = self.encode(Tree::Outbox, &record)?;
        let key = seq_key(seq);
        // No sled transaction: in sled 0.34 each one writes out the log
        // buffer twice, which made the send path disk-bound. The `next_out`
        // lock keeps enqueues of this account apart, and the order of the
        // three writes makes whatever prefix of them survives a crash safe:
        // an id or pending entry without its record is ignored (and the
        // pending one removed at open, see `repair_outbox`).
        self.tree(Tree::OutboxIds)
            .insert(id.as_bytes(), &key)
            .map_err(|e| self.sled(Tree::OutboxIds, "queue a message", e))?;
        self.tree(Tree::OutboxPending)
            .insert(key, &[])
            .map_err(|e| self.sled(Tree::OutboxPending, "queue a message", e))?;
        self.tree(Tree::Outbox)
            .insert(key, value)
            .map_err(|e| self.sled(Tree::Outbox, "queue a message", e))?;
        *next = seq + 1;
        Ok(Enqueued {
            record,
            created: true,
        })
    }

    /// Brings the outbox indexes back in line with the records after a
    /// crash between the separate writes of an enqueue or status change:
    /// pending entries without a record, or whose record has left the
    /// outbox, go; a failed record gets its failed entry.
    fn repair_outbox(&self) -> Result<(), StoreError> {
        let pending = self.tree(Tree::OutboxPending);
        for row in pending.iter() {
            let (key, _) = row.map_err(|e| self.sled(Tree::OutboxPending, "list messages", e))?;
            let record = match parse_seq(&key) {
                Some(seq) => self.outgoing_at(seq)?,
                None => None,
            };
            if record.as_ref().is_some_and(|r| r.status.is_pending()) {
                continue;
            }
            if record.is_some_and(|r| r.status == DeliveryStatus::Failed) {
                self.tree(Tree::OutboxFailed)
                    .insert(&key, &[])
                    .map_err(|e| self.sled(Tree::OutboxFailed, "repair the index", e))?;
            }
            pending
                .remove(&key)
                .map_err(|e| self.sled(Tree::OutboxPending, "repair the index", e))?;
        }
        Ok(())
    }

    fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let row = self
            .tree(Tree::OutboxIds)
            .get(id.as_bytes())
            .map_err(|e| self.sled(Tree::OutboxIds, "look up a message id", e))?;
        Ok(row.and_then(|v| parse_seq(&v)))
    }

    /// The outbox message with this WhatsApp id.
    pub fn outgoing(&self, id: &str) -> Result<Option<OutboxRecord>, StoreError> {
        let Some(seq) = self.seq_of(id)? else {
            return Ok(None);
        };
        // An id entry left by a crashed enqueue may name a sequence that a
        // later message reused.
        Ok(self.outgoing_at(seq)?.filter(|r| r.id == id))
    }

    fn outgoing_at(&self, seq: u64) -> Result<Option<OutboxRecord>, StoreError> {
        let key = seq_key(seq);
        let row = self
            .tree(Tree::Outbox)
            .get(key)
            .map_err(|e| self.sled(Tree::Outbox, "read a message", e))?;
        row.map(|v| self.decode(Tree::Outbox, &key, &v)).transpose()
    }

    /// Queued and sent-but-unacked messages, oldest first: what a connection
    /// has to (re)send.
    pub fn pending(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.indexed(Tree::OutboxPending, |s| s.is_pending())
    }

    /// Messages given up on, oldest first.
    pub fn failed(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.indexed(Tree::OutboxFailed, |s| s == DeliveryStatus::Failed)
    }

    /// The records an index names, checked against their status: a status
    /// change writes the record before the index.
    fn indexed(
        &self,
        index: Tree,
        belongs: impl Fn(DeliveryStatus) -> bool,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut out = Vec::new();
        for row in self.tree(index).iter() {
            let (key, _) = row.map_err(|e| self.sled(index, "list messages", e))?;
            let Some(seq) = parse_seq(&key) else { continue };
            if let Some(record) = self.outgoing_at(seq)?
                && belongs(record.status)
            {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Every outbox message, newest first, at most `limit`.
    pub fn recent_outgoing(&self, limit: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut out = Vec::new();
        for row in self.tree(Tree::Outbox).iter().rev().take(limit) {
            let (key, value) = row.map_err(|e| self.sled(Tree::Outbox, "list messages", e))?;
            out.push(self.decode(Tree::Outbox, &key, &value)?);
        }
        Ok(out)
    }

    pub fn counts(&self) -> OutboxCounts {
        OutboxCounts {
            queued: self.tree(Tree::OutboxPending).len() as u64,
            failed: self.tree(Tree::OutboxFailed).len() as u64,
        }
    }

    /// Moves message `id` to `status` when that is progress (see
    /// [`DeliveryStatus`]); returns the updated record, or `None` when
    /// nothing changed (unknown id, or not progress). `error` is kept as
    /// `last_error`. Moving to `Sent` counts an attempt.
    pub fn advance(
        &self,
        id: &str,
        status: DeliveryStatus,
        error: Option<String>,
        now_ms: u64,
    ) -> Result<Option<OutboxRecord>, StoreError> {
        self.update(id, now_ms, |record| {
            if !record.status.may_become(status) {
                return false;
            }
            record.status = status;
            if status == DeliveryStatus::Sent {
                record.attempts += 1;
            }
            if error.is_some() {
                record.last_error = error.clone();
            }
            true
        })
    }

    /// Records a failed try that will be retried: the message goes back to
    /// `Queued` (from `Queued` or `Sent`) with the reason. Returns the record.
    pub fn retry_later(
        &self,
        id: &str,
        error: String,
        now_ms: u64,
    ) -> Result<Option<OutboxRecord>, StoreError> {
        self.update(id, now_ms, |record| {
            if !record.status.is_pending() {
                return false;
            }
            record.status = DeliveryStatus::Queued;
            record.attempts += 1;
            record.last_error = Some(error.clone());
            true
        })
    }

    fn update(
        &self,
        id: &str,
        now_ms: u64,
        change: impl Fn(&mut OutboxRecord) -> bool,
    ) -> Result<Option<OutboxRecord>, StoreError> {
        let Some(seq) = self.seq_of(id)? else {
            return Ok(None);
        };
        let key = seq_key(seq);
        let outbox = self.tree(Tree::Outbox);
        // A compare-and-swap on the one record instead of a sled transaction
        // (see `enqueue_unflushed`): the sender and the supervisor may race
        // on the same message, and the loser retries on the new value.
        let record = loop {
            let Some(old) = outbox
                .get(key)
                .map_err(|e| self.sled(Tree::Outbox, "read a message", e))?
            else {
                return Ok(None);
            };
            let mut record: OutboxRecord = self.decode(Tree::Outbox, &key, &old)?;
            // The id entry may be a crashed enqueue's, naming a reused sequence.
            if record.id != id || !change(&mut record) {
                return Ok(None);
            }
            record.updated_at = now_ms;
            let new = self.encode(Tree::Outbox, &record)?;
            let swapped = outbox
                .compare_and_swap(key, Some(old), Some(new))
                .map_err(|e| self.sled(Tree::Outbox, "update a message's status", e))?;
            if swapped.is_ok() {
                break record;
            }
        };
        // Statuses only move forward and never back into the outbox, so the
        // indexes follow the record; a crash in between is repaired at open.
        if !record.status.is_pending() {
            if record.status == DeliveryStatus::Failed {
                self.tree(Tree::OutboxFailed)
                    .insert(key, &[])
                    .map_err(|e| self.sled(Tree::OutboxFailed, "update a message's status", e))?;
            }
            self.tree(Tree::OutboxPending)
                .remove(key)
                .map_err(|e| self.sled(Tree::OutboxPending, "update a message's status", e))?;
        }
        Ok(Some(record))
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
        let stored = self.store_inbound_unflushed(batch, now_ms)?;
        self.flush().await?;
        Ok(stored)
    }

    fn store_inbound_unflushed(
        &self,
        batch: &[Inbound],
        now_ms: u64,
    ) -> Result<Vec<InboxRecord>, StoreError> {
        let mut next = self.next_in.lock().unwrap_or_else(PoisonError::into_inner);
        let trees = (
            self.tree(Tree::Inbox),
            self.tree(Tree::InboxIds),
            self.tree(Tree::InboxChats),
            self.tree(Tree::InboxChatStats),
        );
        let first = *next;
        let stored = trees
            .transaction(|(inbox, ids, chats, stats)| {
                let mut seq = first;
                let mut stored = Vec::new();
                for message in batch {
                    let dedupe = dedupe_key(message);
                    if ids.get(&dedupe)?.is_some() {
                        continue;
                    }
                    let record = InboxRecord {
                        seq,
                        received_at: now_ms,
                        message: message.clone(),
                    };
                    inbox.insert(&seq_key(seq), self.tx_encode(Tree::Inbox, &record)?)?;
                    ids.insert(dedupe, &seq_key(seq))?;
                    chats.insert(chat_key(&message.chat, seq), &[])?;
                    let chat = message.chat.as_bytes();
                    let mut summary = match stats.get(chat)? {
                        Some(v) => self.tx_decode(Tree::InboxChatStats, chat, &v)?,
                        None => ChatSummary {
                            chat: message.chat.clone(),
                            count: 0,
                            last_timestamp: message.timestamp,
                            last_seq: seq,
                        },
                    };
                    summary.count += 1;
                    summary.last_seq = seq;
                    summary.last_timestamp = message.timestamp;
                    stats.insert(chat, self.tx_encode(Tree::InboxChatStats, &summary)?)?;
                    stored.push(record);
                    seq += 1;
                }
                Ok(stored)
            })
            .map_err(|e| self.tx(Tree::Inbox, "store received messages", e))?;
        *next = first + stored.len() as u64;
        Ok(stored)
    }

    /// Up to `limit` messages with a sequence below `before` (all when
    /// `None`), newest first, of one chat or of all.
    pub fn messages(
        &self,
        chat: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let before = before.unwrap_or(u64::MAX);
        let mut seqs = Vec::with_capacity(limit + 1);
        match chat {
            None => {
                for row in self.tree(Tree::Inbox).range(..seq_key(before)).rev() {
                    let (key, _) = row.map_err(|e| self.sled(Tree::Inbox, "list messages", e))?;
                    seqs.extend(parse_seq(&key));
                    if seqs.len() > limit {
                        break;
                    }
                }
            }
            Some(chat) => {
                let prefix = chat_prefix(chat);
                let tree = self.tree(Tree::InboxChats);
                for row in tree.range(prefix.clone()..chat_key(chat, before)).rev() {
                    let (key, _) =
                        row.map_err(|e| self.sled(Tree::InboxChats, "list a chat", e))?;
                    seqs.extend(key.get(prefix.len()..).and_then(parse_seq));
                    if seqs.len() > limit {
                        break;
                    }
                }
            }
        }
        let more = seqs.len() > limit;
        seqs.truncate(limit);
        let mut messages = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let key = seq_key(seq);
            let row = self
                .tree(Tree::Inbox)
                .get(key)
                .map_err(|e| self.sled(Tree::Inbox, "read a message", e))?;
            if let Some(v) = row {
                messages.push(self.decode(Tree::Inbox, &key, &v)?);
            }
        }
        let next_cursor = if more {
            messages.last().map(|m: &InboxRecord| m.seq)
        } else {
            None
        };
        Ok(Page {
            messages,
            next_cursor,
        })
    }

    /// Every chat with messages, most recently active first.
    pub fn chats(&self) -> Result<Vec<ChatSummary>, StoreError> {
        let tree = Tree::InboxChatStats;
        let mut chats = Vec::new();
        for row in self.tree(tree).iter() {
            let (key, value) = row.map_err(|e| self.sled(tree, "list chats", e))?;
            chats.push(self.decode::<ChatSummary>(tree, &key, &value)?);
        }
        chats.sort_by_key(|c| std::cmp::Reverse(c.last_seq));
        Ok(chats)
    }

    // -----------------------------------------------------------------------
    // Retention

    /// Deletes inbox messages and finished outbox messages beyond
    /// `retention`, oldest first. Pending outbox messages are never deleted.
    pub fn prune(&self, retention: Retention, now_ms: u64) -> Result<Pruned, StoreError> {
        let cutoff = retention
            .max_age
            .map(|age| now_ms.saturating_sub(age.as_millis() as u64));
        let max = retention.max_messages.unwrap_or(u64::MAX);
        let mut pruned = Pruned::default();

        let mut inbox_len = self.tree(Tree::Inbox).len() as u64;
        while let Some((key, value)) = self
            .tree(Tree::Inbox)
            .first()
            .map_err(|e| self.sled(Tree::Inbox, "read its oldest message", e))?
        {
            let record: InboxRecord = self.decode(Tree::Inbox, &key, &value)?;
            let expired = cutoff.is_some_and(|c| record.received_at < c);
            if inbox_len <= max && !expired {
                break;
            }
            self.remove_inbound(&record)?;
            inbox_len -= 1;
            pruned.inbox += 1;
        }

        let outbox_len = self.tree(Tree::Outbox).len() as u64;
        let mut doomed = Vec::new();
        for row in self.tree(Tree::Outbox).iter() {
            let (key, value) = row.map_err(|e| self.sled(Tree::Outbox, "list messages", e))?;
            let record: OutboxRecord = self.decode(Tree::Outbox, &key, &value)?;
            let expired = cutoff.is_some_and(|c| record.created_at < c);
            if outbox_len - (doomed.len() as u64) <= max && !expired {
                break;
            }
            if !record.status.is_pending() {
                doomed.push(record);
            }
        }
        for record in doomed {
            self.remove_outgoing(&record)?;
            pruned.outbox += 1;
        }
        Ok(pruned)
    }

    fn remove_inbound(&self, record: &InboxRecord) -> Result<(), StoreError> {
        let trees = (
            self.tree(Tree::Inbox),
            self.tree(Tree::InboxIds),
            self.tree(Tree::InboxChats),
            self.tree(Tree::InboxChatStats),
        );
        let m = &record.message;
        trees
            .transaction(|(inbox, ids, chats, stats)| {
                inbox.remove(&seq_key(record.seq))?;
                ids.remove(dedupe_key(m))?;
                chats.remove(chat_key(&m.chat, record.seq))?;
                decrement_chat(self, stats, &m.chat)?;
                Ok(())
            })
            .map_err(|e| self.tx(Tree::Inbox, "delete an old message", e))
    }

    fn remove_outgoing(&self, record: &OutboxRecord) -> Result<(), StoreError> {
        let trees = (
            self.tree(Tree::Outbox),
            self.tree(Tree::OutboxIds),
            self.tree(Tree::OutboxFailed),
        );
        trees
            .transaction(|(outbox, ids, failed)| {
                outbox.remove(&seq_key(record.seq))?;
                ids.remove(record.id.as_bytes())?;
                failed.remove(&seq_key(record.seq))?;
                Ok(())
            })
            .map_err(|e| self.tx(Tree::Outbox, "delete an old message", e))
    }
}

fn decrement_chat(store: &MessageStore, stats: &TransactionalTree, chat: &str) -> TxResult<()> {
    let key = chat.as_bytes();
    let Some(v) = stats.get(key)? else {
        return Ok(());
    };
    let mut summary: ChatSummary = store.tx_decode(Tree::InboxChatStats, key, &v)?;
    summary.count = summary.count.saturating_sub(1);
    if summary.count == 0 {
        stats.remove(key)?;
    } else {
        stats.insert(key, store.tx_encode(Tree::InboxChatStats, &summary)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
