//! The SQL behind [`super::MessageStore`]: row mapping and the statements
//! that take more than one line.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{DeliveryStatus, Inbound, InboxRecord, OutboxRecord, Pruned, Sendable};

pub(super) const OUTBOX_COLUMNS: &str = "seq, id, recipient, body, created_at, updated_at, status, attempts, \
                              last_error, idempotency_key";
/// Qualified: the search joins `inbox_fts`, which has `body` too.
pub(super) const INBOX_COLUMNS: &str = "inbox.seq, inbox.received_at, inbox.id, inbox.chat, inbox.sender, \
                             inbox.from_me, inbox.sent_at, inbox.body, inbox.description";
pub(super) const PENDING: &str = "status IN ('queued', 'sent')";
/// Pending sends that are whole in their outbox row: not a file (its bytes
/// are elsewhere), not a reaction, edit or deletion (their row's text alone
/// would go out as a new message).
pub(super) const PENDING_TEXTS: &str = "status IN ('queued', 'sent') AND NOT EXISTS \
    (SELECT 1 FROM outbox_media m WHERE m.account = outbox.account AND m.id = outbox.id) \
    AND NOT EXISTS (SELECT 1 FROM outbox_context c WHERE c.account = outbox.account \
    AND c.id = outbox.id AND coalesce(c.react_to, c.edit_of, c.revoke_of) IS NOT NULL)";
pub(super) const FAILED: &str = "status = 'failed'";
/// Spelled as [`PENDING`] and then narrowed: SQLite uses a partial index
/// only when the query repeats the index's own condition, and without
/// `outbox_pending` this read, once per send batch, walks every message the
/// account ever sent.
pub(super) const QUEUED: &str = "status IN ('queued', 'sent') AND status = 'queued'";

pub(super) fn outbox_row(row: &Row<'_>) -> rusqlite::Result<OutboxRecord> {
    let status: String = row.get(6)?;
    Ok(OutboxRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        to: row.get(2)?,
        text: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                6,
                rusqlite::types::Type::Text,
                format!("unknown delivery status {status:?}").into(),
            )
        })?,
        attempts: row.get(7)?,
        last_error: row.get(8)?,
        idempotency_key: row.get(9)?,
    })
}

pub(super) fn inbox_row(row: &Row<'_>) -> rusqlite::Result<InboxRecord> {
    Ok(InboxRecord {
        seq: row.get(0)?,
        received_at: row.get(1)?,
        message: Inbound {
            id: row.get(2)?,
            chat: row.get(3)?,
            sender: row.get(4)?,
            from_me: row.get(5)?,
            timestamp: row.get(6)?,
            text: row.get(7)?,
            description: row.get(8)?,
        },
    })
}

/// Inserts a message into the inbox unless it is there already (same
/// chat, sender and id) and counts it in its chat; returns its sequence
/// when it is new.
pub(super) fn insert_inbound(
    conn: &Connection,
    account: &str,
    message: &Inbound,
    now_ms: u64,
) -> rusqlite::Result<Option<u64>> {
    let seq: Option<u64> = conn
        .prepare_cached(
            "INSERT INTO inbox (account, chat, sender, id, from_me, sent_at, received_at, \
             body, description) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (account, chat, sender, id) DO NOTHING RETURNING seq",
        )?
        .query_row(
            params![
                account,
                message.chat,
                message.sender,
                message.id,
                message.from_me,
                message.timestamp,
                now_ms,
                message.text,
                message.description
            ],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(seq) = seq {
        conn.prepare_cached(
            "INSERT INTO chats (account, chat, count, last_timestamp, last_seq) \
             VALUES (?1, ?2, 1, ?3, ?4) ON CONFLICT (account, chat) DO UPDATE SET \
             count = count + 1, last_timestamp = excluded.last_timestamp, \
             last_seq = excluded.last_seq",
        )?
        .execute(params![account, message.chat, message.timestamp, seq])?;
    }
    Ok(seq)
}

/// What a user typed, as an FTS5 query that matches messages holding every
/// word (`None` when it has none): each word quoted (FTS5's own syntax never applies, so no input is
/// a syntax error), joined by FTS5's implicit AND.
pub(super) fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Inserts `record` unless the account has a message with its id; returns
/// the new sequence.
pub(super) fn insert_outgoing(
    conn: &Connection,
    account: &str,
    record: &OutboxRecord,
) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached(
        "INSERT INTO outbox (account, id, recipient, body, created_at, updated_at, status, \
         attempts, last_error, idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (account, id) DO NOTHING RETURNING seq",
    )?
    .query_row(
        params![
            account,
            record.id,
            record.to,
            record.text,
            record.created_at,
            record.updated_at,
            record.status.as_str(),
            record.attempts,
            record.last_error,
            record.idempotency_key
        ],
        |row| row.get(0),
    )
    .optional()
}

pub(super) fn outgoing(
    conn: &Connection,
    account: &str,
    id: &str,
) -> rusqlite::Result<Option<OutboxRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE account = ?1 AND id = ?2"
    ))?
    .query_row(params![account, id], outbox_row)
    .optional()
}

/// The account's outbox messages matching `filter`, by sequence in
/// `order`, at most `limit` (all when negative).
pub(super) fn outgoing_where(
    conn: &Connection,
    account: &str,
    filter: &str,
    order: &str,
    limit: i64,
) -> rusqlite::Result<Vec<OutboxRecord>> {
    conn.prepare_cached(&outgoing_sql(filter, order))?
        .query_map(params![account, limit], outbox_row)?
        .collect()
}

/// The statement of [`outgoing_where`]: `?1` the account, `?2` the limit.
pub(super) fn outgoing_sql(filter: &str, order: &str) -> String {
    format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE account = ?1 AND {filter} \
         ORDER BY seq {order} LIMIT ?2"
    )
}

/// `record` with its context and its file, read in the caller's job.
pub(super) fn sendable(
    conn: &Connection,
    account: &str,
    record: OutboxRecord,
) -> rusqlite::Result<Sendable> {
    Ok(Sendable {
        context: super::contacts::context(conn, account, &record.id)?,
        media: super::media_out::media(conn, account, &record.id)?,
        record,
    })
}

/// Returns what went, and how many of the outbox messages were failed ones.
pub(super) fn prune(
    conn: &Connection,
    account: &str,
    max: i64,
    cutoff: u64,
) -> rusqlite::Result<(Pruned, u64)> {
    let mut pruned = Pruned::default();
    let inbox_len: i64 = conn.query_row(
        "SELECT count(*) FROM inbox WHERE account = ?1",
        [account],
        |row| row.get(0),
    )?;
    let excess = (inbox_len - max).max(0);
    let mut chats: Vec<String> = conn
        .prepare(
            "DELETE FROM inbox WHERE seq IN (SELECT seq FROM inbox WHERE account = ?1 \
             ORDER BY seq LIMIT ?2) OR (account = ?1 AND received_at < ?3) RETURNING chat",
        )?
        .query_map(params![account, excess, cutoff], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    pruned.inbox = chats.len() as u64;
    chats.sort();
    chats.dedup();
    for chat in chats {
        conn.execute(
            "UPDATE chats SET count = (SELECT count(*) FROM inbox WHERE account = ?1 \
             AND chat = ?2) WHERE account = ?1 AND chat = ?2",
            params![account, chat],
        )?;
    }
    conn.execute(
        "DELETE FROM chats WHERE account = ?1 AND count = 0",
        [account],
    )?;

    let outbox_len: i64 = conn.query_row(
        "SELECT count(*) FROM outbox WHERE account = ?1",
        [account],
        |row| row.get(0),
    )?;
    let excess = (outbox_len - max).max(0);
    let statuses: Vec<String> = conn
        .prepare(&format!(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE account = ?1 \
             AND NOT {PENDING} ORDER BY seq LIMIT ?2) \
             OR (account = ?1 AND NOT {PENDING} AND created_at < ?3) RETURNING status"
        ))?
        .query_map(params![account, excess, cutoff], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    pruned.outbox = statuses.len() as u64;
    let failed = statuses.iter().filter(|s| *s == "failed").count() as u64;
    Ok((pruned, failed))
}
