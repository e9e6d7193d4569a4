//! The message database's schema, as numbered migrations: migration N
//! brings `PRAGMA user_version` from N-1 to N, in one transaction, so a
//! database is always at a version some walinkd wrote. Never edit a
//! migration that has shipped; add the next one.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: outbox, inbox and chats, all accounts in one file.
    "CREATE TABLE meta (
         key TEXT PRIMARY KEY NOT NULL,
         value TEXT
     ) WITHOUT ROWID;
     -- AUTOINCREMENT: a sequence is never reused, even after a prune, so a
     -- cursor handed out once keeps meaning the same place.
     CREATE TABLE outbox (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         account TEXT NOT NULL,
         id TEXT NOT NULL,
         recipient TEXT NOT NULL,
         body TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL,
         status TEXT NOT NULL CHECK (status IN
             ('queued', 'sent', 'server_ack', 'delivered', 'read', 'failed')),
         attempts INTEGER NOT NULL DEFAULT 0,
         last_error TEXT,
         idempotency_key TEXT,
         UNIQUE (account, id)
     );
     CREATE INDEX outbox_pending ON outbox (account, seq) WHERE status IN ('queued', 'sent');
     CREATE INDEX outbox_failed ON outbox (account, seq) WHERE status = 'failed';
     CREATE INDEX outbox_by_account ON outbox (account, seq);
     CREATE TABLE inbox (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         account TEXT NOT NULL,
         chat TEXT NOT NULL,
         sender TEXT NOT NULL,
         id TEXT NOT NULL,
         from_me INTEGER NOT NULL,
         sent_at INTEGER NOT NULL,
         received_at INTEGER NOT NULL,
         body TEXT,
         description TEXT,
         UNIQUE (account, chat, sender, id)
     );
     CREATE INDEX inbox_by_account ON inbox (account, seq);
     CREATE INDEX inbox_by_chat ON inbox (account, chat, seq);
     CREATE TABLE chats (
         account TEXT NOT NULL,
         chat TEXT NOT NULL,
         count INTEGER NOT NULL,
         last_timestamp INTEGER NOT NULL,
         last_seq INTEGER NOT NULL,
         PRIMARY KEY (account, chat)
     ) WITHOUT ROWID;",
    // 2: full-text search over the inbox (FTS5, external content: the
    // text is stored once, in `inbox`; triggers keep the index in step).
    "CREATE VIRTUAL TABLE inbox_fts USING fts5 (
         body, description, content = 'inbox', content_rowid = 'seq'
     );
     CREATE TRIGGER inbox_fts_insert AFTER INSERT ON inbox BEGIN
         INSERT INTO inbox_fts (rowid, body, description)
         VALUES (new.seq, new.body, new.description);
     END;
     CREATE TRIGGER inbox_fts_delete AFTER DELETE ON inbox BEGIN
         INSERT INTO inbox_fts (inbox_fts, rowid, body, description)
         VALUES ('delete', old.seq, old.body, old.description);
     END;
     INSERT INTO inbox_fts (inbox_fts) VALUES ('rebuild');",
    // 3: people. A contact is one person, known by LID, by phone number or
    // both (digits, no server part); one row per person, so a mapping that
    // joins two rows merges them (see `contacts.rs`).
    "CREATE TABLE contacts (
         account TEXT NOT NULL,
         lid TEXT,
         phone TEXT,
         name TEXT,
         updated_at INTEGER NOT NULL,
         CHECK (lid IS NOT NULL OR phone IS NOT NULL)
     );
     CREATE UNIQUE INDEX contacts_by_lid ON contacts (account, lid) WHERE lid IS NOT NULL;
     CREATE UNIQUE INDEX contacts_by_phone ON contacts (account, phone) WHERE phone IS NOT NULL;",
    // 4: the subjects of the account's groups, as the server last listed them.
    "CREATE TABLE groups (
         account TEXT NOT NULL,
         jid TEXT NOT NULL,
         subject TEXT NOT NULL,
         updated_at INTEGER NOT NULL,
         PRIMARY KEY (account, jid)
     ) WITHOUT ROWID;",
    // 5: what a message carries beyond its text (the media's metadata, as
    // JSON) and what happens to it after it arrived: the message it
    // answers, an edit, a deletion for everyone, and reactions (one per
    // person; an empty emoji removes it). An edit changes the text, so the
    // search index follows updates too.
    "ALTER TABLE inbox ADD COLUMN reply_to TEXT;
     ALTER TABLE inbox ADD COLUMN media TEXT;
     ALTER TABLE inbox ADD COLUMN edited INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE inbox ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX inbox_by_id ON inbox (account, id);
     CREATE TABLE reactions (
         account TEXT NOT NULL,
         message_id TEXT NOT NULL,
         reactor TEXT NOT NULL,
         emoji TEXT NOT NULL,
         at INTEGER NOT NULL,
         PRIMARY KEY (account, message_id, reactor)
     ) WITHOUT ROWID;
     -- What an outbox message answers or reacts to (its body is the text,
     -- or the emoji of a reaction).
     CREATE TABLE outbox_context (
         account TEXT NOT NULL,
         id TEXT NOT NULL,
         reply_to TEXT,
         react_to TEXT,
         PRIMARY KEY (account, id)
     ) WITHOUT ROWID;
     -- Retention takes what hangs off a message with it (a duplicate
     -- removed by a merge leaves its twin's reactions alone).
     CREATE TRIGGER inbox_reactions_delete AFTER DELETE ON inbox
     WHEN NOT EXISTS (SELECT 1 FROM inbox WHERE account = old.account AND id = old.id) BEGIN
         DELETE FROM reactions WHERE account = old.account AND message_id = old.id;
     END;
     CREATE TRIGGER outbox_context_delete AFTER DELETE ON outbox BEGIN
         DELETE FROM outbox_context WHERE account = old.account AND id = old.id;
     END;
     CREATE TRIGGER inbox_fts_update AFTER UPDATE OF body, description ON inbox BEGIN
         INSERT INTO inbox_fts (inbox_fts, rowid, body, description)
         VALUES ('delete', old.seq, old.body, old.description);
         INSERT INTO inbox_fts (rowid, body, description)
         VALUES (new.seq, new.body, new.description);
     END;",
    // 6: what fetching a received file needs (the blob's path on the
    // media hosts, the key that opens it, the hashes that check it) and
    // where walink saved it. One row per inbox row; it goes with the row.
    // The key is as secret as the message: with an encryption key the
    // whole file is SQLCipher.
    "CREATE TABLE media (
         seq INTEGER PRIMARY KEY NOT NULL,
         kind TEXT NOT NULL,
         media_key BLOB NOT NULL,
         direct_path TEXT,
         url TEXT,
         file_sha256 BLOB,
         file_enc_sha256 BLOB,
         size INTEGER,
         path TEXT
     );
     CREATE TRIGGER inbox_media_delete AFTER DELETE ON inbox BEGIN
         DELETE FROM media WHERE seq = old.seq;
     END;",
    // 7: media going out. `outbox_media` is what the message says of its
    // file and, once uploaded, where it is (a retry or a retry receipt
    // sends the very same message, never a second upload under a new key);
    // the media key is drawn at accept, so even an upload repeated after a
    // crash produces the same blob. `outbox_files` holds the file itself
    // while the send is pending, in the same commit as the send (encrypted
    // with the rest of the file when a key is configured); it goes when
    // the server acks the message or it fails. An outbox message may also
    // edit or delete for everyone one this account sent (`edit_of`,
    // `revoke_of`). New tables and columns only: it does not care which
    // migration ran just before it.
    "ALTER TABLE outbox_context ADD COLUMN edit_of TEXT;
     ALTER TABLE outbox_context ADD COLUMN revoke_of TEXT;
     CREATE TABLE outbox_media (
         account TEXT NOT NULL,
         id TEXT NOT NULL,
         kind TEXT NOT NULL CHECK (kind IN ('image', 'video', 'audio', 'document')),
         mimetype TEXT NOT NULL,
         filename TEXT,
         size INTEGER NOT NULL,
         sha256 TEXT NOT NULL,
         media_key BLOB NOT NULL,
         url TEXT,
         direct_path TEXT,
         file_sha256 BLOB,
         file_enc_sha256 BLOB,
         file_length INTEGER,
         media_key_timestamp INTEGER,
         PRIMARY KEY (account, id)
     ) WITHOUT ROWID;
     CREATE TABLE outbox_files (
         account TEXT NOT NULL,
         id TEXT NOT NULL,
         data BLOB NOT NULL,
         PRIMARY KEY (account, id)
     );
     CREATE TRIGGER outbox_media_delete AFTER DELETE ON outbox BEGIN
         DELETE FROM outbox_media WHERE account = old.account AND id = old.id;
         DELETE FROM outbox_files WHERE account = old.account AND id = old.id;
     END;",
    // 8: what whatsapp-rust keeps per message (see `library.rs`), here
    // rather than in sled, whose memory grows with what it stores: its
    // copy of each send, for retry receipts (a rowid table: a payload can
    // be kilobytes), and message secrets (poll votes, edits, bot replies),
    // kept for weeks. A state directory from before this migration
    // starts without them; the outbox answers retry receipts for its
    // sends, and a lost secret costs at most an add-on to an old message.
    "CREATE TABLE sent_copies (
         account TEXT NOT NULL,
         chat TEXT NOT NULL,
         id TEXT NOT NULL,
         payload BLOB NOT NULL,
         timestamp INTEGER NOT NULL,
         UNIQUE (account, chat, id)
     );
     CREATE INDEX sent_copies_by_time ON sent_copies (account, timestamp);
     CREATE TABLE msg_secrets (
         account TEXT NOT NULL,
         chat TEXT NOT NULL,
         sender TEXT NOT NULL,
         msg_id TEXT NOT NULL,
         secret BLOB NOT NULL,
         expires_at INTEGER NOT NULL,
         message_ts INTEGER NOT NULL,
         PRIMARY KEY (account, chat, sender, msg_id)
     ) WITHOUT ROWID;
     -- 0 means never: those rows are not in the index, so pruning reads
     -- only rows with a deadline.
     CREATE INDEX msg_secrets_by_expiry ON msg_secrets (account, expires_at)
         WHERE expires_at != 0;",
    // 9: received messages whatsapp-rust buffers between decrypting them
    // and walink's inbox holding them (see `library.rs`), keyed as the
    // library keys them: a stanza id is unique only within its chat and
    // sender. A rowid table, as `sent_copies`: a message can be kilobytes.
    // The index serves the library's sweep of rows older than a week. A
    // state directory from before this migration had them in sled; they
    // are dropped there, not moved (see `LEGACY_PER_MESSAGE_TREES`).
    "CREATE TABLE pending_inbound (
         account TEXT NOT NULL,
         chat TEXT NOT NULL,
         sender TEXT NOT NULL,
         id TEXT NOT NULL,
         message BLOB NOT NULL,
         inserted_at INTEGER NOT NULL,
         UNIQUE (account, chat, sender, id)
     );
     CREATE INDEX pending_inbound_by_time ON pending_inbound (account, inserted_at);",
];

/// The schema version this walinkd writes.
pub(super) const VERSION: u32 = MIGRATIONS.len() as u32;

/// Applies the migrations the database has not had yet. A database from a
/// newer walinkd is refused rather than written with an older schema.
pub(super) fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current > VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "its schema version is {current}, newer than this walinkd's {VERSION}: \
                 run the walinkd that wrote it"
            )),
        ));
    }
    for (done, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", done as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
