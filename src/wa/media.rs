//! Fetching a received file: the media hosts the server names
//! (`media_conn`, asked again when a host refuses the route), the blob
//! over walink's own HTTP client (the account's proxy, IP family and TLS),
//! and the library's decryption, with every check a client owes: the MAC,
//! the blob's SHA-256, and the file's SHA-256 and length.

use std::fs::File;
use std::io::{Read, Seek, Write};

use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use wacore::download::{DownloadUtils, MediaType};
use whatsapp_rust::download::{DownloadParams, MediaRoute};

use super::http::BlockingBody;
use super::session::Session;
use crate::net::http::{Request, RequestBody};
use crate::store::MediaRef;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the message names no {0} for its file, so there is nothing walink can fetch")]
    Incomplete(&'static str),
    #[error(
        "the account is not connected, and only the server names the media hosts; retry once it is connected"
    )]
    NotConnected,
    #[error("asking WhatsApp for its media hosts failed: {0}; retry later")]
    MediaConn(String),
    #[error("downloading failed: {0}")]
    Download(String),
    #[error("the file is not what the message says: {0}; nothing was kept")]
    Mismatch(String),
    #[error("writing the file failed: {0}")]
    Write(#[source] std::io::Error),
}

/// A file written and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub size: u64,
    /// Of the decrypted file, hex.
    pub sha256: String,
}

/// What the hosts tried so far said.
#[derive(Default)]
struct Tally {
    failures: Vec<String>,
    mismatch: Option<String>,
    refused: bool,
}

impl Tally {
    /// Notes one host's answer; `Some` when it ends the download (the
    /// file, or a write error no other host can mend).
    fn take(&mut self, result: Result<Fetched, Failure>) -> Option<Result<Fetched, MediaError>> {
        match result {
            Ok(fetched) => return Some(Ok(fetched)),
            Err(Failure::Write(e)) => return Some(Err(MediaError::Write(e))),
            Err(Failure::Refused(why)) => {
                self.refused = true;
                self.failures.push(why);
            }
            Err(Failure::Other(why)) => self.failures.push(why),
            Err(Failure::Mismatch(why)) => {
                self.failures.push(why.clone());
                self.mismatch = Some(why);
            }
        }
        None
    }

    fn verdict(mut self) -> MediaError {
        if let Some(why) = self.mismatch {
            return MediaError::Mismatch(why);
        }
        if self.failures.is_empty() {
            self.failures.push("the server named no media host".into());
        }
        let advice = if self.refused {
            "the file may have expired on WhatsApp's servers (they keep it for weeks, not forever)"
        } else {
            "check the account's path to WhatsApp with `walink diagnose`, then retry"
        };
        MediaError::Download(format!("{}; {advice}", self.failures.join("; ")))
    }
}

/// Why one host did not give the file.
enum Failure {
    /// The host refused the route or has no such blob: a fresh
    /// `media_conn` may help.
    Refused(String),
    Other(String),
    Mismatch(String),
    Write(std::io::Error),
}

fn media_type(kind: &str) -> MediaType {
    match kind {
        "image" => MediaType::Image,
        "video" => MediaType::Video,
        "audio" | "voice" => MediaType::Audio,
        "sticker" => MediaType::Sticker,
        _ => MediaType::Document,
    }
}

/// The host (and port) of `url`, for messages: the query carries the
/// route's auth token, which is never shown.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Session {
    /// Downloads, decrypts and checks the file `media` names into `out`
    /// (emptied first), trying each host the server names, then the
    /// message's own URL. On error `out` may hold unverified bytes: the
    /// caller discards it.
    pub async fn download_media(&self, media: &MediaRef, out: File) -> Result<Fetched, MediaError> {
        let direct_path = media
            .direct_path
            .clone()
            .ok_or(MediaError::Incomplete("direct path"))?;
        let enc_sha256 = media
            .file_enc_sha256
            .clone()
            .ok_or(MediaError::Incomplete("encrypted SHA-256"))?;
        let params = DownloadParams::encrypted(
            direct_path,
            &media.media_key,
            media.file_sha256.as_deref().unwrap_or_default(),
            &enc_sha256,
            media.size.unwrap_or_default(),
            media_type(&media.kind),
        );
        let mut tally = Tally::default();
        for fresh in [false, true] {
            if !self.is_connected() {
                return Err(MediaError::NotConnected);
            }
            let conn = self
                .client
                .refresh_media_conn(fresh)
                .await
                .map_err(|e| MediaError::MediaConn(e.to_string()))?;
            let requests =
                DownloadUtils::prepare_download_requests(&params, &MediaRoute::from(&conn))
                    .map_err(|e| MediaError::Download(e.to_string()))?;
            for request in requests {
                if let Some(done) = tally.take(self.fetch(&request.url, media, &out).await) {
                    return done;
                }
            }
            // A host that refused the route may take a fresh one.
            if !tally.refused {
                break;
            }
        }
        if let Some(url) = &media.url
            && let Some(done) = tally.take(self.fetch(url, media, &out).await)
        {
            return done;
        }
        Err(tally.verdict())
    }

    /// One host: the blob streamed through decryption into `out`, hashing
    /// both sides as they pass.
    async fn fetch(&self, url: &str, media: &MediaRef, out: &File) -> Result<Fetched, Failure> {
        use crate::net::http::HttpError;
        let host = host_of(url).to_owned();
        let request = Request {
            method: "GET".into(),
            url: url.to_owned(),
            headers: Vec::new(),
        };
        let response = match self.http.send(&request, RequestBody::Empty).await {
            Ok(r) => r,
            // These name the URL, whose query holds the route's token.
            Err(HttpError::BadUrl { .. } | HttpError::PlainHttp { .. }) => {
                return Err(Failure::Other(format!(
                    "media host {host}: not an https:// URL"
                )));
            }
            Err(e) => return Err(Failure::Other(format!("media host {host}: {e}"))),
        };
        match response.status {
            200 => {}
            status @ (401 | 403 | 404 | 410) => {
                return Err(Failure::Refused(format!(
                    "media host {host} answered HTTP {status}"
                )));
            }
            status => {
                return Err(Failure::Other(format!(
                    "media host {host} answered HTTP {status}"
                )));
            }
        }
        let mut out = out.try_clone().map_err(Failure::Write)?;
        let media = media.clone();
        let body = BlockingBody::new(response.body, Handle::current());
        tokio::task::spawn_blocking(move || decrypt_into(body, &media, &mut out, &host))
            .await
            .unwrap_or_else(|e| Err(Failure::Other(format!("the decryption task failed: {e}"))))
    }
}

/// Hashes what passes through.
struct Hashing<T> {
    inner: T,
    hash: Sha256,
    len: u64,
    /// A write failed: the error is the disk's, not the host's.
    failed: bool,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Hashing<T> {
        Hashing {
            inner,
            hash: Sha256::new(),
            len: 0,
            failed: false,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| self.failed = true)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn decrypt_into(
    body: impl Read,
    media: &MediaRef,
    out: &mut File,
    host: &str,
) -> Result<Fetched, Failure> {
    out.set_len(0).map_err(Failure::Write)?;
    out.rewind().map_err(Failure::Write)?;
    let mut blob = Hashing::new(body);
    let (decrypted, flushed, len, sha256) = {
        let mut file = Hashing::new(std::io::BufWriter::new(&mut *out));
        let decrypted = DownloadUtils::decrypt_stream_to_writer(
            &mut blob,
            &media.media_key,
            media_type(&media.kind),
            &mut file,
        );
        let flushed = file.flush();
        let decrypted = match decrypted {
            Err(e) if file.failed => Err(e.downcast::<std::io::Error>()),
            other => Ok(other),
        };
        (decrypted, flushed, file.len, file.hash.finalize())
    };
    let decrypted = match decrypted {
        Ok(d) => d,
        Err(Ok(e)) => return Err(Failure::Write(e)),
        Err(Err(e)) => Err(e),
    };
    flushed.map_err(Failure::Write)?;
    if let Err(e) = decrypted {
        // A read error is the host's; anything else is the blob's.
        let why = format!("{e:#}");
        return Err(if e.downcast_ref::<std::io::Error>().is_some() {
            Failure::Other(format!("media host {host}: {why}"))
        } else {
            Failure::Mismatch(format!("the blob from {host} does not decrypt ({why})"))
        });
    }
    let blob_sha256 = blob.hash.finalize();
    if media
        .file_enc_sha256
        .as_deref()
        .is_some_and(|want| want != blob_sha256.as_slice())
    {
        return Err(Failure::Mismatch(format!(
            "the blob from {host} has SHA-256 {}, the message says {}",
            hex(&blob_sha256),
            hex(media.file_enc_sha256.as_deref().unwrap_or_default())
        )));
    }
    if let Some(want) = media
        .file_sha256
        .as_deref()
        .filter(|w| *w != sha256.as_slice())
    {
        return Err(Failure::Mismatch(format!(
            "the file from {host} has SHA-256 {}, the message says {}",
            hex(&sha256),
            hex(want)
        )));
    }
    if let Some(want) = media.size.filter(|w| *w != len) {
        return Err(Failure::Mismatch(format!(
            "the file from {host} is {len} bytes, the message says {want}"
        )));
    }
    out.sync_all().map_err(Failure::Write)?;
    Ok(Fetched {
        size: len,
        sha256: hex(&sha256),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(file: &[u8]) -> (MediaRef, Vec<u8>) {
        let e = wacore::upload::encrypt_media(file, MediaType::Image).unwrap();
        let media = MediaRef {
            kind: "image".into(),
            media_key: e.media_key.to_vec(),
            direct_path: Some("/v/t62.7118-24/x.enc".into()),
            url: None,
            file_sha256: Some(e.file_sha256.to_vec()),
            file_enc_sha256: Some(e.file_enc_sha256.to_vec()),
            size: Some(file.len() as u64),
        };
        (media, e.data_to_upload)
    }

    fn open(media: &MediaRef, blob: &[u8]) -> (Result<Fetched, Failure>, Vec<u8>) {
        let mut out = tempfile::tempfile().unwrap();
        out.write_all(b"stale bytes from an earlier host").unwrap();
        let result = decrypt_into(blob, media, &mut out, "h.example");
        out.rewind().unwrap();
        let mut written = Vec::new();
        out.read_to_end(&mut written).unwrap();
        (result, written)
    }

    fn mismatch(result: Result<Fetched, Failure>) -> String {
        match result {
            Err(Failure::Mismatch(why)) => why,
            Ok(_) => panic!("accepted"),
            Err(_) => panic!("failed, but not as a mismatch"),
        }
    }

    #[test]
    fn a_file_is_kept_only_when_mac_hashes_and_length_agree() {
        let file: Vec<u8> = (0..40_000u32).map(|i| (i % 241) as u8).collect();
        let (media, blob) = sealed(&file);
        let (result, written) = open(&media, &blob);
        let fetched = result.ok().expect("a good blob opens");
        assert_eq!(written, file, "the file, and nothing left from before");
        assert_eq!(fetched.size, file.len() as u64);
        assert_eq!(fetched.sha256, hex(&Sha256::digest(&file)));

        let mut damaged = blob.clone();
        damaged[100] ^= 1;
        assert!(mismatch(open(&media, &damaged).0).contains("does not decrypt"));

        let wrong = |f: &dyn Fn(&mut MediaRef)| {
            let mut m = media.clone();
            f(&mut m);
            mismatch(open(&m, &blob).0)
        };
        assert!(
            wrong(&|m| m.file_sha256 = Some(vec![0; 32]))
                .contains("the file from h.example has SHA-256")
        );
        assert!(
            wrong(&|m| m.file_enc_sha256 = Some(vec![0; 32]))
                .contains("the blob from h.example has SHA-256")
        );
        assert!(wrong(&|m| m.size = Some(7)).contains("is 40000 bytes, the message says 7"));
    }

    #[test]
    fn hosts_are_shown_without_the_route_token() {
        assert_eq!(
            host_of("https://mmg.whatsapp.net/v/t62/x.enc?auth=SECRET&token=T"),
            "mmg.whatsapp.net"
        );
        assert_eq!(
            host_of("https://127.0.0.1:4000?auth=SECRET"),
            "127.0.0.1:4000"
        );
        assert_eq!(media_type("voice"), MediaType::Audio);
        assert_eq!(media_type("document"), MediaType::Document);
    }
}
