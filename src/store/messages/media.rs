//! The media index: for each received media message, what fetching its
//! file needs (kept in `media`, beside the inbox row) and where walink
//! saved it.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{MediaMeta, MessageStore, StoreError};

/// Where a received file is and how to open it: the encrypted blob's path
/// on WhatsApp's media hosts, the key it is sealed with and the hashes
/// that check it. The key is a secret: `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    /// `image`, `video`, `audio`, `voice`, `document` or `sticker`: which
    /// keys the blob is sealed with.
    pub kind: String,
    pub media_key: Vec<u8>,
    pub direct_path: Option<String>,
    pub url: Option<String>,
    /// Of the decrypted file.
    pub file_sha256: Option<Vec<u8>>,
    /// Of the blob as the hosts serve it.
    pub file_enc_sha256: Option<Vec<u8>>,
    /// Of the decrypted file, in bytes.
    pub size: Option<u64>,
}

impl std::fmt::Debug for MediaRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRef")
            .field("kind", &self.kind)
            .field("direct_path", &self.direct_path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A received media message as the index has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMedia {
    pub id: String,
    /// What the message says of its file.
    pub meta: MediaMeta,
    pub fetch: MediaRef,
}

/// What the account has under a message id, for `walink media`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaLookup {
    NoMessage,
    /// A message without a file to fetch; `kind` says what it is.
    NoMedia {
        kind: String,
    },
    Media(Box<StoredMedia>),
}

pub(super) fn insert(conn: &Connection, seq: u64, r: &MediaRef) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO media (seq, kind, media_key, direct_path, url, file_sha256, \
         file_enc_sha256, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        seq,
        r.kind,
        r.media_key,
        r.direct_path,
        r.url,
        r.file_sha256,
        r.file_enc_sha256,
        r.size
    ])?;
    Ok(())
}

impl MessageStore {
    /// The newest message stored under `id` and, when it has one, its file.
    pub async fn media_of(&self, id: &str) -> Result<MediaLookup, StoreError> {
        let id = id.to_owned();
        self.read("find a message's media", move |conn, account| {
            let row = conn
                .prepare_cached(
                    "SELECT inbox.description, inbox.media, media.kind, media.media_key, \
                     media.direct_path, media.url, media.file_sha256, media.file_enc_sha256, \
                     media.size FROM inbox LEFT JOIN media ON media.seq = inbox.seq \
                     WHERE inbox.account = ?1 AND inbox.id = ?2 ORDER BY inbox.seq DESC LIMIT 1",
                )?
                .query_row(params![account, id], |r| {
                    let description: Option<String> = r.get(0)?;
                    let meta: Option<String> = r.get(1)?;
                    let kind: Option<String> = r.get(2)?;
                    let Some(kind) = kind else {
                        return Ok(MediaLookup::NoMedia {
                            kind: description.unwrap_or_else(|| "text".into()),
                        });
                    };
                    Ok(MediaLookup::Media(Box::new(StoredMedia {
                        id: id.clone(),
                        meta: meta
                            .and_then(|m| serde_json::from_str(&m).ok())
                            .unwrap_or_default(),
                        fetch: MediaRef {
                            kind,
                            media_key: r.get(3)?,
                            direct_path: r.get(4)?,
                            url: r.get(5)?,
                            file_sha256: r.get(6)?,
                            file_enc_sha256: r.get(7)?,
                            size: r.get(8)?,
                        },
                    })))
                })
                .optional()?;
            Ok(row.unwrap_or(MediaLookup::NoMessage))
        })
        .await
    }

    /// Records where the file of message `id` was saved.
    pub async fn set_media_path(&self, id: &str, path: &str) -> Result<(), StoreError> {
        let (id, path) = (id.to_owned(), path.to_owned());
        self.write(
            false,
            "record where a file was saved",
            move |conn, account| {
                conn.prepare_cached(
                    "UPDATE media SET path = ?3 WHERE seq = (SELECT seq FROM inbox \
                 WHERE account = ?1 AND id = ?2 ORDER BY seq DESC LIMIT 1)",
                )?
                .execute(params![account, id, path])?;
                Ok(())
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        Address, Inbound, MessageDb, Retention, Sighting, ToFile, messages_db_path,
    };

    fn received(id: &str, fetch: Option<MediaRef>) -> ToFile {
        ToFile {
            message: Inbound {
                id: id.into(),
                chat: "555@s.whatsapp.net".into(),
                sender: "555@s.whatsapp.net".into(),
                from_me: false,
                timestamp: 1,
                text: None,
                description: fetch.as_ref().map(|f| f.kind.clone()),
            },
            chat: Address::Phone("555".into()),
            people: vec![Sighting::default()],
            reply_to: None,
            change: None,
            media: fetch.as_ref().map(|_| MediaMeta {
                mimetype: Some("image/jpeg".into()),
                ..MediaMeta::default()
            }),
            fetch,
        }
    }

    #[tokio::test]
    async fn the_index_keeps_what_fetching_needs_and_where_the_file_went() {
        let dir = tempfile::tempdir().unwrap();
        let store = MessageDb::open(&messages_db_path(dir.path()), None)
            .unwrap()
            .account("sales")
            .unwrap();
        let fetch = MediaRef {
            kind: "image".into(),
            media_key: vec![7; 32],
            direct_path: Some("/v/t62.7118-24/a.enc".into()),
            url: Some("https://mmg.whatsapp.net/v/t62.7118-24/a.enc".into()),
            file_sha256: Some(vec![1; 32]),
            file_enc_sha256: Some(vec![2; 32]),
            size: Some(5000),
        };
        assert!(
            !format!("{fetch:?}").contains("7, 7"),
            "Debug never shows the key"
        );
        store
            .file_inbound(
                vec![received("IMG", Some(fetch.clone())), received("TXT", None)],
                1,
            )
            .await
            .unwrap();
        let MediaLookup::Media(found) = store.media_of("IMG").await.unwrap() else {
            panic!("IMG has media");
        };
        assert_eq!(found.fetch, fetch);
        assert_eq!(found.meta.mimetype.as_deref(), Some("image/jpeg"));
        assert_eq!(
            store.media_of("TXT").await.unwrap(),
            MediaLookup::NoMedia {
                kind: "text".into()
            }
        );
        assert_eq!(
            store.media_of("NONE").await.unwrap(),
            MediaLookup::NoMessage
        );

        store
            .set_media_path("IMG", "/srv/media/IMG.jpg")
            .await
            .unwrap();
        let seqs = store
            .messages(None, None, None, 10)
            .await
            .unwrap()
            .messages
            .iter()
            .map(|r| r.seq)
            .collect();
        let notes = store.annotations(seqs).await.unwrap();
        let shown = notes.values().find_map(|n| n.media.clone()).unwrap();
        assert_eq!(shown.path.as_deref(), Some("/srv/media/IMG.jpg"));

        let everything = Retention {
            max_age: None,
            max_messages: Some(0),
        };
        store.prune(everything, 2).await.unwrap();
        let left = store
            .read("count", |conn, _| {
                conn.query_row("SELECT count(*) FROM media", [], |r| r.get::<_, i64>(0))
            })
            .await
            .unwrap();
        assert_eq!(left, 0, "retention takes the index row with its message");
    }
}
