//! Media going out: what an outbox message says of its file, the file
//! itself while the send is pending, and the upload's result once there is
//! one (migration 7). A send is built from these alone, so the first try,
//! a retry after a crash and a retry receipt's resend are the same message.

use rusqlite::{Connection, OptionalExtension, params};

use super::{MediaMeta, MessageStore, StoreError};

/// What kind of message a file goes out as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
        }
    }

    fn parse(text: &str) -> Option<MediaKind> {
        [
            MediaKind::Image,
            MediaKind::Video,
            MediaKind::Audio,
            MediaKind::Document,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// Where an uploaded file is and what identifies it, as the server answered
/// the upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub url: String,
    pub direct_path: String,
    pub file_sha256: [u8; 32],
    pub file_enc_sha256: [u8; 32],
    pub file_length: u64,
    /// Unix seconds.
    pub media_key_timestamp: i64,
}

/// The file an outbox message carries (its caption is the message's text).
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMedia {
    pub kind: MediaKind,
    pub mimetype: String,
    /// Shown to the recipient of a document.
    pub filename: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Of the file, hex.
    pub sha256: String,
    /// Drawn when the send is accepted; every upload of this message uses it.
    pub media_key: [u8; 32],
    /// `None` until the upload succeeded.
    pub upload: Option<Uploaded>,
}

impl std::fmt::Debug for OutgoingMedia {
    // The media key decrypts the file: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMedia")
            .field("kind", &self.kind)
            .field("mimetype", &self.mimetype)
            .field("filename", &self.filename)
            .field("size", &self.size)
            .field("sha256", &self.sha256)
            .field("uploaded", &self.upload.is_some())
            .finish_non_exhaustive()
    }
}

impl OutgoingMedia {
    /// What the history shows of it.
    pub fn meta(&self) -> MediaMeta {
        MediaMeta {
            mimetype: Some(self.mimetype.clone()),
            size: Some(self.size),
            filename: self.filename.clone(),
            sha256: Some(self.sha256.clone()),
            path: None,
        }
    }
}

/// A file to send with a draft: its description and its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaDraft {
    pub media: OutgoingMedia,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for MediaDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaDraft")
            .field("media", &self.media)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Stores `draft` for outbox message `id`, in the caller's transaction.
pub(super) fn insert(
    conn: &Connection,
    account: &str,
    id: &str,
    draft: &MediaDraft,
) -> rusqlite::Result<()> {
    let m = &draft.media;
    conn.prepare_cached(
        "INSERT INTO outbox_media (account, id, kind, mimetype, filename, size, sha256, media_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        account,
        id,
        m.kind.as_str(),
        m.mimetype,
        m.filename,
        m.size,
        m.sha256,
        m.media_key.as_slice()
    ])?;
    conn.prepare_cached("INSERT INTO outbox_files (account, id, data) VALUES (?1, ?2, ?3)")?
        .execute(params![account, id, draft.data])?;
    Ok(())
}

/// The file is needed only until the server has the message (a retry
/// receipt's resend uses the upload), so it goes with the last pending status.
pub(super) fn release(conn: &Connection, account: &str, id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM outbox_files WHERE account = ?1 AND id = ?2")?
        .execute(params![account, id])?;
    Ok(())
}

fn key32(bytes: Vec<u8>, column: usize) -> rusqlite::Result<[u8; 32]> {
    bytes.try_into().map_err(|b: Vec<u8>| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Blob,
            format!("expected 32 bytes, found {}", b.len()).into(),
        )
    })
}

fn media_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutgoingMedia> {
    let kind: String = row.get(0)?;
    let upload = match (
        row.get::<_, Option<String>>(6)?,
        row.get::<_, Option<String>>(7)?,
        row.get::<_, Option<Vec<u8>>>(8)?,
        row.get::<_, Option<Vec<u8>>>(9)?,
        row.get::<_, Option<u64>>(10)?,
        row.get::<_, Option<i64>>(11)?,
    ) {
        (Some(url), Some(direct_path), Some(sha), Some(enc), Some(len), Some(at)) => {
            Some(Uploaded {
                url,
                direct_path,
                file_sha256: key32(sha, 8)?,
                file_enc_sha256: key32(enc, 9)?,
                file_length: len,
                media_key_timestamp: at,
            })
        }
        _ => None,
    };
    Ok(OutgoingMedia {
        kind: MediaKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("unknown media kind {kind:?}").into(),
            )
        })?,
        mimetype: row.get(1)?,
        filename: row.get(2)?,
        size: row.get(3)?,
        sha256: row.get(4)?,
        media_key: key32(row.get(5)?, 5)?,
        upload,
    })
}

/// The file outbox message `id` carries, if it carries one.
pub(super) fn media(
    conn: &Connection,
    account: &str,
    id: &str,
) -> rusqlite::Result<Option<OutgoingMedia>> {
    conn.prepare_cached(
        "SELECT kind, mimetype, filename, size, sha256, media_key, url, direct_path, \
         file_sha256, file_enc_sha256, file_length, media_key_timestamp \
         FROM outbox_media WHERE account = ?1 AND id = ?2",
    )?
    .query_row(params![account, id], media_row)
    .optional()
}

impl MessageStore {
    /// The bytes of the file outbox message `id` carries, while it is pending.
    pub async fn staged_file(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_owned();
        self.read("read a message's file", move |conn, account| {
            conn.prepare_cached("SELECT data FROM outbox_files WHERE account = ?1 AND id = ?2")?
                .query_row(params![account, id], |r| r.get(0))
                .optional()
        })
        .await
    }

    /// Records where message `id`'s file was uploaded; on disk before it
    /// returns, so the message sent next never names another upload.
    pub async fn record_upload(&self, id: &str, upload: Uploaded) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(true, "record an upload", move |conn, account| {
            conn.prepare_cached(
                "UPDATE outbox_media SET url = ?3, direct_path = ?4, file_sha256 = ?5, \
                 file_enc_sha256 = ?6, file_length = ?7, media_key_timestamp = ?8 \
                 WHERE account = ?1 AND id = ?2",
            )?
            .execute(params![
                account,
                id,
                upload.url,
                upload.direct_path,
                upload.file_sha256.as_slice(),
                upload.file_enc_sha256.as_slice(),
                upload.file_length,
                upload.media_key_timestamp
            ])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Address, DeliveryStatus, Draft, MessageDb, messages_db_path};
    use super::*;

    fn open(dir: &tempfile::TempDir) -> MessageStore {
        MessageDb::open(&messages_db_path(dir.path()), None)
            .unwrap()
            .account("sales")
            .unwrap()
    }

    /// The file row itself, whether or not its message is still there.
    async fn media_of(store: &MessageStore, id: &str) -> Option<OutgoingMedia> {
        let id = id.to_owned();
        store
            .read("read a message's file", move |conn, account| {
                media(conn, account, &id)
            })
            .await
            .unwrap()
    }

    fn photo() -> MediaDraft {
        MediaDraft {
            media: OutgoingMedia {
                kind: MediaKind::Image,
                mimetype: "image/png".into(),
                filename: None,
                size: 4,
                sha256: "ab".repeat(32),
                media_key: [7; 32],
                upload: None,
            },
            data: b"\x89PNG".to_vec(),
        }
    }

    #[tokio::test]
    async fn a_file_is_held_until_the_server_has_its_message_and_its_upload_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let draft = Draft {
            id: "m1".into(),
            to: "1000@lid".into(),
            text: "caption".into(),
            media: Some(photo()),
            ..Draft::default()
        };
        store
            .send_filed(draft, Address::Lid("1000".into()), "1@s.whatsapp.net", 1)
            .await
            .unwrap();
        store
            .enqueue("t1", "1000@lid", "a text", None, 2)
            .await
            .unwrap();
        let reaction = Draft {
            id: "r1".into(),
            to: "1000@lid".into(),
            text: "👍".into(),
            react_to: Some("m0".into()),
            ..Draft::default()
        };
        store
            .send_filed(reaction, Address::Lid("1000".into()), "1@s.whatsapp.net", 2)
            .await
            .unwrap();
        assert_eq!(media_of(&store, "m1").await, Some(photo().media));
        assert_eq!(media_of(&store, "t1").await, None);
        assert_eq!(
            store.staged_file("m1").await.unwrap().as_deref(),
            Some(&b"\x89PNG"[..])
        );
        // Backups carry whole texts only: no file, no reaction.
        let texts: Vec<String> = store
            .pending_texts()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(texts, ["t1"]);
        let history = store.messages(None, None, None, 10).await.unwrap();
        let sent = history
            .messages
            .iter()
            .find(|r| r.message.id == "m1")
            .unwrap();
        assert_eq!(sent.message.description.as_deref(), Some("image"));
        assert_eq!(sent.message.text.as_deref(), Some("caption"));
        let notes = store.annotations(vec![sent.seq]).await.unwrap();
        assert_eq!(notes[&sent.seq].media, Some(photo().media.meta()));

        let uploaded = Uploaded {
            url: "https://mmg/x.enc".into(),
            direct_path: "/v/x.enc".into(),
            file_sha256: [1; 32],
            file_enc_sha256: [2; 32],
            file_length: 4,
            media_key_timestamp: 1_700_000_000,
        };
        store.record_upload("m1", uploaded.clone()).await.unwrap();
        store
            .advance("m1", DeliveryStatus::Sent, None, 3)
            .await
            .unwrap();
        assert!(
            store.staged_file("m1").await.unwrap().is_some(),
            "still pending"
        );
        store
            .advance("m1", DeliveryStatus::ServerAck, None, 4)
            .await
            .unwrap();
        drop(store);

        let store = open(&dir);
        assert_eq!(
            store.staged_file("m1").await.unwrap(),
            None,
            "acked: released"
        );
        let kept = media_of(&store, "m1").await.unwrap();
        assert_eq!(
            kept.upload,
            Some(uploaded),
            "a retry receipt still needs it"
        );

        let retention = crate::store::Retention {
            max_age: None,
            max_messages: Some(0),
        };
        store.prune(retention, 5).await.unwrap();
        assert_eq!(media_of(&store, "m1").await, None, "retention takes it");
        assert!(media_of(&store, "t1").await.is_none());
    }
}
