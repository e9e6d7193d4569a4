//! Blobs by direct path, and the auth tokens `media_conn` handed out.

use base64::Engine as _;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use super::crypto::sha256;

/// Route and auth lifetime the real server gives (seconds).
const MEDIA_CONN_TTL: u64 = 300;
const AUTH_TTL: u64 = 21_600;

/// One stored (encrypted) upload.
#[derive(Debug)]
pub struct Blob {
    /// The `/mms/TYPE` it was uploaded under (`image`, `document`, …).
    pub mms_type: String,
    pub data: Vec<u8>,
    pub enc_sha256: [u8; 32],
    pub direct_path: String,
}

/// Where an upload can be fetched: the upload endpoint's JSON answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stored {
    pub url: String,
    pub direct_path: String,
}

/// Why an upload was refused, with the HTTP status the real endpoint uses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UploadRefused {
    #[error("auth token is missing or was not issued by media_conn")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
}

impl UploadRefused {
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::BadRequest(_) => 400,
        }
    }
}

#[derive(Default)]
struct Inner {
    auth_tokens: HashSet<String>,
    blobs: HashMap<String, Arc<Blob>>,
    next_object: u64,
}

#[derive(Default)]
pub struct MediaStore {
    host: OnceLock<String>,
    inner: Mutex<Inner>,
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    BASE64_URL_SAFE_NO_PAD.encode(bytes)
}

/// The path part of a direct path or URL: no scheme, host or query.
fn path_of(direct_path_or_url: &str) -> &str {
    let rest = direct_path_or_url
        .strip_prefix("https://")
        .or_else(|| direct_path_or_url.strip_prefix("http://"))
        .map_or(direct_path_or_url, |r| r.find('/').map_or("", |i| &r[i..]));
    rest.split('?').next().unwrap_or_default()
}

impl MediaStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set once, when the media listener is bound.
    pub fn set_host(&self, host: String) {
        let _ = self.host.set(host);
    }

    /// `127.0.0.1:PORT`, the hostname `media_conn` advertises.
    pub fn host(&self) -> &str {
        self.host.get().map_or("", String::as_str)
    }

    /// The `<media_conn>` child of the `w:m` IQ answer, with a fresh auth
    /// token and this host as primary, for uploads and downloads.
    pub fn media_conn(&self) -> Node {
        let auth = random_token();
        self.lock().auth_tokens.insert(auth.clone());
        let host = NodeBuilder::new("host")
            .attr("hostname", self.host().to_owned())
            .attr("type", "primary")
            .children([
                NodeBuilder::new("upload").build(),
                NodeBuilder::new("download")
                    .children(
                        ["image", "video", "audio", "document", "sticker"]
                            .map(|c| NodeBuilder::new(c).build()),
                    )
                    .build(),
            ])
            .build();
        NodeBuilder::new("media_conn")
            .attr("auth", auth)
            .attr("ttl", MEDIA_CONN_TTL.to_string())
            .attr("auth_ttl", AUTH_TTL.to_string())
            .attr("max_buckets", "12")
            .children([host])
            .build()
    }

    /// An upload to `/mms/{mms_type}/{path_token}?auth=…&token=…`: the auth
    /// must be one `media_conn` issued and both tokens the URL-safe base64
    /// of the body's SHA-256, as the real endpoint checks.
    pub fn upload(
        &self,
        mms_type: &str,
        path_token: &str,
        auth: Option<&str>,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Stored, UploadRefused> {
        if !auth.is_some_and(|a| self.lock().auth_tokens.contains(a)) {
            return Err(UploadRefused::Unauthorized);
        }
        let hash = BASE64_URL_SAFE_NO_PAD.encode(sha256(&body));
        if token != Some(path_token) {
            return Err(UploadRefused::BadRequest(format!(
                "query token {token:?} differs from the path's {path_token:?}"
            )));
        }
        if hash != path_token {
            return Err(UploadRefused::BadRequest(format!(
                "token {path_token:?} is not the SHA-256 of the uploaded body ({hash})"
            )));
        }
        if body.is_empty() {
            return Err(UploadRefused::BadRequest("empty upload".into()));
        }
        Ok(self.store(mms_type, body))
    }

    /// Stores `data` (already encrypted) as if uploaded; the mock's own
    /// contacts "upload" this way.
    pub fn store(&self, mms_type: &str, data: Vec<u8>) -> Stored {
        let enc_sha256 = sha256(&data);
        let mut inner = self.lock();
        inner.next_object += 1;
        // The CDN's shape: a type-coded folder, an object name, a signed query.
        let folder = match mms_type {
            "document" => "t62.7119-24",
            "audio" | "ptt" => "t62.7117-24",
            "video" => "t62.7161-24",
            _ => "t62.7118-24",
        };
        let path = format!(
            "/v/{folder}/{}_{}_n.enc",
            30_000_000 + inner.next_object,
            u32::from_be_bytes([enc_sha256[0], enc_sha256[1], enc_sha256[2], enc_sha256[3]])
        );
        let direct_path = format!(
            "{path}?ccb=11-4&oh=01_{}&oe={:08X}&_nc_sid=5e03e0",
            hex_of(&enc_sha256[4..20]),
            u32::from_be_bytes([
                enc_sha256[20],
                enc_sha256[21],
                enc_sha256[22],
                enc_sha256[23]
            ])
        );
        let blob = Arc::new(Blob {
            mms_type: mms_type.to_owned(),
            data,
            enc_sha256,
            direct_path,
        });
        inner.blobs.insert(path, blob.clone());
        drop(inner);
        self.stored_of(&blob)
    }

    /// The upload endpoint's answer for `blob`.
    pub fn stored_of(&self, blob: &Blob) -> Stored {
        Stored {
            url: format!("https://{}{}&mms3=true", self.host(), blob.direct_path),
            direct_path: blob.direct_path.clone(),
        }
    }

    /// The blob a direct path or URL names.
    pub fn get(&self, direct_path_or_url: &str) -> Option<Arc<Blob>> {
        self.lock().blobs.get(path_of(direct_path_or_url)).cloned()
    }

    /// The blob whose encrypted SHA-256 is `enc_sha256`.
    pub fn by_enc_sha256(&self, enc_sha256: &[u8]) -> Option<Arc<Blob>> {
        self.lock()
            .blobs
            .values()
            .find(|b| b.enc_sha256 == enc_sha256)
            .cloned()
    }

    /// The blob whose upload token (URL-safe base64 of the encrypted
    /// SHA-256) is `token`.
    pub fn by_enc_token(&self, token: &str) -> Option<Arc<Blob>> {
        let hash = BASE64_URL_SAFE_NO_PAD.decode(token).ok()?;
        self.by_enc_sha256(&hash)
    }

    pub fn blob_count(&self) -> usize {
        self.lock().blobs.len()
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodefmt::attr;

    #[test]
    fn uploads_need_an_issued_token_and_the_right_hash() {
        let store = MediaStore::default();
        store.set_host("127.0.0.1:9".into());
        let conn = store.media_conn();
        let auth = attr(&conn, "auth").unwrap();
        let body = b"encrypted bytes".to_vec();
        let token = BASE64_URL_SAFE_NO_PAD.encode(sha256(&body));
        assert_eq!(
            store.upload("image", &token, Some("forged"), Some(&token), body.clone()),
            Err(UploadRefused::Unauthorized)
        );
        assert!(matches!(
            store.upload("image", "AAAA", Some(&auth), Some("AAAA"), body.clone()),
            Err(UploadRefused::BadRequest(_))
        ));
        let stored = store
            .upload("image", &token, Some(&auth), Some(&token), body.clone())
            .unwrap();
        assert!(stored.url.starts_with("https://127.0.0.1:9/v/t62.7118-24/"));
        assert!(stored.url.contains(&stored.direct_path));
        let blob = store.get(&stored.direct_path).unwrap();
        assert_eq!(blob.data, body);
        assert_eq!(store.get(&stored.url).unwrap().data, body);
        assert!(store.get("/v/t62.7118-24/none.enc").is_none());
        // What the client fetches: the direct path plus its own query.
        let fetched = format!("{}?auth=x&token={token}", stored.direct_path);
        assert_eq!(store.get(&fetched).unwrap().data, body);
        assert!(store.by_enc_sha256(&sha256(&body)).is_some());
    }
}
