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
    /// Where walink saved it, if it did.
    pub path: Option<String>,
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
                     media.size, media.path FROM inbox LEFT JOIN media ON media.seq = inbox.seq \
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
                        path: r.get(9)?,
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
