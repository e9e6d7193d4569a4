//! What whatsapp-rust keeps per message, for the account's `SledBackend`
//! (which forwards these trait methods here): its copy of each send, to
//! answer retry receipts; message secrets, which poll votes, edits and
//! bot replies are encrypted with; and the received messages it buffers
//! between decrypting them and walink's inbox holding them.
//!
//! They grow with traffic, not with contacts, and the first two are kept
//! for weeks (a secret 30 days, 90 for polls). In sled they were most of
//! an account's data, and sled's memory grows with what it stores; here
//! they cost pages on disk. None of them is a promise to a user (the
//! outbox keeps every accepted send; the inbox holds every received
//! message before the server hears it arrived), so no write of theirs
//! waits for an fsync of its own: they ride the next commit, and a power
//! cut may lose the newest few, as a kill -9 lost them in sled. Two return
//! once queued, as nobody needs their outcome: a sent copy and the
//! deletion of buffered messages. Buffering a received message returns
//! once committed: the library must find it again after a crash (see
//! [`MessageStore::buffer_inbound`]).

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};
use wacore::store::traits::{
    MsgSecretEntry, PendingInboundKey, PendingInboundRow, merge_msg_secret_expiry,
    merge_msg_secret_message_ts,
};

use super::MessageStore;
use crate::store::error::StoreError;

/// Hard cap on an account's sent copies (the bound of wacore's in-memory
/// store): pruning by age is the library's sweep, this only bounds a burst.
pub(crate) const MAX_SENT_COPIES: u64 = 4096;

/// [`SentCopies`] before it was counted.
const UNKNOWN: u64 = u64::MAX;

/// How many sent copies an account has, so a send need not count them:
/// moved only inside writer jobs (which run one at a time), and
/// forgotten when a commit fails, so the next write counts again.
#[derive(Debug)]
pub(crate) struct SentCopies(AtomicU64);

impl Default for SentCopies {
    fn default() -> Self {
        Self(AtomicU64::new(UNKNOWN))
    }
}

impl SentCopies {
    fn known(&self, conn: &Connection, account: &str) -> rusqlite::Result<u64> {
        match self.0.load(Ordering::Acquire) {
            UNKNOWN => count_sent(conn, account),
            n => Ok(n),
        }
    }

    fn set(&self, n: u64) {
        self.0.store(n, Ordering::Release);
    }

    fn forget(&self) {
        self.set(UNKNOWN);
    }

    /// `removed` rows went, if the count is known.
    fn removed(&self, removed: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n != UNKNOWN).then(|| n.saturating_sub(removed))
            });
    }
}

fn count_sent(conn: &Connection, account: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT count(*) FROM sent_copies WHERE account = ?1")?
        .query_row([account], |row| row.get(0))
}

impl MessageStore {
    /// Keeps whatsapp-rust's copy of message `id` sent to `chat` (replacing
    /// one under the same id), taken at `now` (Unix seconds). Returns once
    /// it is queued: the library waits for this before the message goes
    /// out, and waiting for a commit there would put every send behind
    /// the fsync of the sends accepted meanwhile. A later take or prune is
    /// queued behind it, so it sees the copy; a failure is logged.
    pub(crate) fn keep_sent_copy(
        &self,
        chat: &str,
        id: &str,
        payload: Vec<u8>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (chat, id) = (chat.to_owned(), id.to_owned());
        let counts = self.counts.clone();
        self.library_write_behind("keep a copy of a sent message", move |conn, account| {
            keep_sent(
                conn,
                account,
                &counts.sent_copies,
                &chat,
                &id,
                &payload,
                now,
            )
        })
    }

    /// Removes and returns the library's copy of message `id` sent to
    /// `chat`, if it has one.
    pub(crate) async fn take_sent_copy(
        &self,
        chat: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (chat, id) = (chat.to_owned(), id.to_owned());
        let counts = self.counts.clone();
        self.library_write(
            false,
            "take a copy of a sent message",
            move |conn, account| {
                let taken: Option<Vec<u8>> = conn
                    .prepare_cached(
                        "DELETE FROM sent_copies WHERE account = ?1 AND chat = ?2 AND id = ?3 \
                     RETURNING payload",
                    )?
                    .query_row(params![account, chat, id], |row| row.get(0))
                    .optional()?;
                if taken.is_some() {
                    counts.sent_copies.removed(1);
                }
                Ok(taken)
            },
        )
        .await
    }

    /// Deletes the sent copies taken before `cutoff` (Unix seconds);
    /// returns how many.
    pub(crate) async fn delete_sent_copies_before(&self, cutoff: i64) -> Result<u32, StoreError> {
        let counts = self.counts.clone();
        self.library_write(
            false,
            "delete old copies of sent messages",
            move |conn, account| {
                let removed = conn
                    .prepare_cached(
                        "DELETE FROM sent_copies WHERE account = ?1 AND timestamp < ?2",
                    )?
                    .execute(params![account, cutoff])?;
                counts.sent_copies.removed(removed as u64);
                Ok(u32::try_from(removed).unwrap_or(u32::MAX))
            },
        )
        .await
    }

    /// Stores message secrets; one already stored under the same (chat,
    /// sender, message id) takes the new secret and wacore's merge of the
    /// deadlines and parent times, so a redelivery never shortens its
    /// window. Returns how many entries were written.
    pub(crate) async fn put_msg_secrets(
        &self,
        entries: Vec<MsgSecretEntry>,
    ) -> Result<usize, StoreError> {
        self.library_write(false, "store message secrets", move |conn, account| {
            let mut old = conn.prepare_cached(
                "SELECT expires_at, message_ts FROM msg_secrets \
                 WHERE account = ?1 AND chat = ?2 AND sender = ?3 AND msg_id = ?4",
            )?;
            let mut put = conn.prepare_cached(
                "INSERT INTO msg_secrets \
                 (account, chat, sender, msg_id, secret, expires_at, message_ts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (account, chat, sender, msg_id) DO UPDATE SET \
                 secret = excluded.secret, expires_at = excluded.expires_at, \
                 message_ts = excluded.message_ts",
            )?;
            for entry in &entries {
                let key = params![account, &*entry.chat, &*entry.sender, &*entry.msg_id];
                let stored: Option<(i64, i64)> = old
                    .query_row(key, |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                let (expires_at, message_ts) = match stored {
                    Some((expires_at, message_ts)) => (
                        merge_msg_secret_expiry(expires_at, entry.expires_at),
                        merge_msg_secret_message_ts(message_ts, entry.message_ts),
                    ),
                    None => (entry.expires_at, entry.message_ts),
                };
                put.execute(params![
                    account,
                    &*entry.chat,
                    &*entry.sender,
                    &*entry.msg_id,
                    &entry.secret[..],
                    expires_at,
                    message_ts
                ])?;
            }
            Ok(entries.len())
        })
        .await
    }

    /// The secret of message `msg_id` from `sender` in `chat`, with the
    /// parent message's time (0 when unknown).
    pub(crate) async fn msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        let key = (chat.to_owned(), sender.to_owned(), msg_id.to_owned());
        self.read("read a message secret", move |conn, account| {
            conn.prepare_cached(
                "SELECT secret, message_ts FROM msg_secrets \
                 WHERE account = ?1 AND chat = ?2 AND sender = ?3 AND msg_id = ?4",
            )?
            .query_row(params![account, key.0, key.1, key.2], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
        })
        .await
    }

    /// Deletes the message secrets whose deadline is at or before `cutoff`
    /// (Unix seconds; a deadline of 0 never comes); returns how many.
    pub(crate) async fn delete_expired_msg_secrets(&self, cutoff: i64) -> Result<u32, StoreError> {
        self.library_write(
            false,
            "delete expired message secrets",
            move |conn, account| {
                let removed = conn
                    .prepare_cached(
                        "DELETE FROM msg_secrets \
                     WHERE account = ?1 AND expires_at != 0 AND expires_at <= ?2",
                    )?
                    .execute(params![account, cutoff])?;
                Ok(u32::try_from(removed).unwrap_or(u32::MAX))
            },
        )
        .await
    }

    /// Buffers received messages whatsapp-rust has decrypted but walink's
    /// inbox does not hold yet, at `now` (Unix seconds); one buffered
    /// again (a redelivery replayed) takes the new copy and time, so the
    /// library's sweep of week-old rows spares a message the server still
    /// redelivers.
    ///
    /// Returns once committed, not once queued as a sent copy is: once
    /// they are buffered the library saves the Signal ratchet past these
    /// messages, and from then on a redelivery can only be answered from
    /// this buffer; without a row it is acknowledged as a duplicate and
    /// lost. No fsync of its own (the reference SqliteStore runs
    /// `synchronous=NORMAL`; the sled tree was not flushed either): a
    /// kill -9 keeps it, and the inbox's commit of the same messages,
    /// which the library waits for next, is fsynced and, the WAL being
    /// written in order, makes this one durable with it.
    pub(crate) async fn buffer_inbound(
        &self,
        rows: &[PendingInboundRow<'_>],
        now: i64,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = rows
            .iter()
            .map(|row| {
                (
                    inbound_key(row.chat, row.sender, row.id),
                    row.message.to_vec(),
                )
            })
            .collect();
        self.library_write(false, "buffer received messages", move |conn, account| {
            let mut put = conn.prepare_cached(
                "INSERT INTO pending_inbound (account, chat, sender, id, message, inserted_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (account, chat, sender, id) DO UPDATE SET \
                     message = excluded.message, inserted_at = excluded.inserted_at",
            )?;
            for ((chat, sender, id), message) in &rows {
                put.execute(params![account, chat, sender, id, message, now])?;
            }
            Ok(())
        })
        .await
    }

    /// The buffered message `id` from `sender` in `chat`, if it is still
    /// buffered.
    pub(crate) async fn buffered_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = inbound_key(chat, sender, id);
        self.read("read a buffered received message", move |conn, account| {
            conn.prepare_cached(
                "SELECT message FROM pending_inbound \
                 WHERE account = ?1 AND chat = ?2 AND sender = ?3 AND id = ?4",
            )?
            .query_row(params![account, key.0, key.1, key.2], |row| row.get(0))
            .optional()
        })
        .await
    }

    /// Drops these messages from the buffer: the inbox holds them now.
    /// Returns once queued: the library acknowledges them to the server
    /// only after this returns, and that need not wait for a commit. A
    /// row that outlives its delete (a crash first, or a failed write,
    /// logged) is replayed on a redelivery into an inbox that stores a
    /// message once, or swept after a week.
    pub(crate) fn unbuffer_inbound(
        &self,
        keys: &[PendingInboundKey<'_>],
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<_> = keys
            .iter()
            .map(|key| inbound_key(key.chat, key.sender, key.id))
            .collect();
        self.library_write_behind(
            "drop received messages from the buffer",
            move |conn, account| {
                let mut delete = conn.prepare_cached(
                    "DELETE FROM pending_inbound \
                 WHERE account = ?1 AND chat = ?2 AND sender = ?3 AND id = ?4",
                )?;
                for (chat, sender, id) in &keys {
                    delete.execute(params![account, chat, sender, id])?;
                }
                Ok(())
            },
        )
    }

    /// Deletes the messages buffered before `cutoff` (Unix seconds);
    /// returns how many.
    pub(crate) async fn delete_inbound_buffered_before(
        &self,
        cutoff: i64,
    ) -> Result<u32, StoreError> {
        self.library_write(
            false,
            "delete old buffered received messages",
            move |conn, account| {
                let removed = conn
                    .prepare_cached(
                        "DELETE FROM pending_inbound WHERE account = ?1 AND inserted_at < ?2",
                    )?
                    .execute(params![account, cutoff])?;
                Ok(u32::try_from(removed).unwrap_or(u32::MAX))
            },
        )
        .await
    }

    /// Deletes all these records of the account: its session was cleared,
    /// and they belong to the device that is gone. Fsynced, as the wipe of
    /// the session is.
    pub(crate) async fn clear_library_records(&self) -> Result<(), StoreError> {
        let counts = self.counts.clone();
        self.library_write(
            true,
            "delete the library's records",
            move |conn, account| {
                conn.prepare_cached("DELETE FROM sent_copies WHERE account = ?1")?
                    .execute([account])?;
                conn.prepare_cached("DELETE FROM msg_secrets WHERE account = ?1")?
                    .execute([account])?;
                conn.prepare_cached("DELETE FROM pending_inbound WHERE account = ?1")?
                    .execute([account])?;
                counts.sent_copies.set(0);
                Ok(())
            },
        )
        .await
    }

    /// A write of these records (fsynced only when `durable`); the count
    /// of sent copies is counted again after one that did not commit.
    async fn library_write<T: Send + 'static>(
        &self,
        durable: bool,
        op: &'static str,
        work: impl FnOnce(&Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let written = self.write(durable, op, work).await;
        if written.is_err() {
            self.counts.sent_copies.forget();
        }
        written
    }

    /// [`Self::library_write`] that returns once queued, not fsynced; a
    /// failure is logged, as nobody waits for it.
    fn library_write_behind(
        &self,
        op: &'static str,
        work: impl FnOnce(&Connection, &str) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<(), StoreError> {
        let counts = self.counts.clone();
        let account = self.account.clone();
        let path = self.db.path().to_owned();
        let work = {
            let account = account.clone();
            move |conn: &Connection| {
                work(conn, &account).map_err(|e| super::sqlite_error(&path, op, &e))
            }
        };
        self.db
            .write_behind(false, work, move |result: Result<(), StoreError>| {
                if let Err(e) = result {
                    counts.sent_copies.forget();
                    tracing::warn!(account = %account, error = %e, "{e}");
                }
            })
    }

    /// Sent copies of this account, counted behind every write queued
    /// before (a read would not wait for [`Self::keep_sent_copy`]'s).
    #[cfg(test)]
    pub(crate) async fn sent_copy_count(&self) -> u64 {
        self.write(false, "count sent copies", |conn, account| {
            count_sent(conn, account)
        })
        .await
        .expect("count the sent copies")
    }

    /// Buffered received messages of this account, counted behind every
    /// write queued before (a read would not wait for
    /// [`Self::unbuffer_inbound`]'s).
    #[cfg(test)]
    pub(crate) async fn buffered_inbound_count(&self) -> u64 {
        self.write(
            false,
            "count buffered received messages",
            |conn, account| {
                conn.prepare_cached("SELECT count(*) FROM pending_inbound WHERE account = ?1")?
                    .query_row([account], |row| row.get(0))
            },
        )
        .await
        .expect("count the buffered received messages")
    }
}

/// A buffered received message's key, owned for a job: (chat, sender,
/// id), as a stanza id is unique only within its chat and sender.
fn inbound_key(chat: &str, sender: &str, id: &str) -> (String, String, String) {
    (chat.to_owned(), sender.to_owned(), id.to_owned())
}

/// Evicts the oldest copies down to 3/4 of the cap once the cap is
/// reached (so the count and the delete are spread over many sends), then
/// writes the copy.
fn keep_sent(
    conn: &Connection,
    account: &str,
    counter: &SentCopies,
    chat: &str,
    id: &str,
    payload: &[u8],
    now: i64,
) -> rusqlite::Result<()> {
    let mut count = counter.known(conn, account)?;
    if count >= MAX_SENT_COPIES {
        // The kept count may have drifted (a take that failed to commit):
        // what is evicted follows the rows themselves.
        count = count_sent(conn, account)?;
        if count >= MAX_SENT_COPIES {
            let evicted = conn
                .prepare_cached(
                    "DELETE FROM sent_copies WHERE rowid IN (SELECT rowid FROM sent_copies \
                     WHERE account = ?1 ORDER BY timestamp, rowid LIMIT ?2)",
                )?
                .execute(params![account, (count - MAX_SENT_COPIES * 3 / 4) as i64])?;
            count -= evicted as u64;
        }
    }
    let replaced = conn
        .prepare_cached("DELETE FROM sent_copies WHERE account = ?1 AND chat = ?2 AND id = ?3")?
        .execute(params![account, chat, id])?;
    conn.prepare_cached(
        "INSERT INTO sent_copies (account, chat, id, payload, timestamp) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![account, chat, id, payload, now])?;
    counter.set(count + 1 - replaced as u64);
    Ok(())
}
