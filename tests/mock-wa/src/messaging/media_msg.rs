//! Media in messages: a contact sending an image or a document (encrypted
//! with a fresh media key and stored on the media host as if uploaded), and
//! what the mock makes of media a client sends (it fetches the blob the
//! message points at and decrypts it with the key the message carries).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use waproto::whatsapp as wa;

use crate::media::crypto::{self, MediaKind};
use crate::media::{MediaStore, Stored};

/// What `POST /admin/deliver` takes under `media`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MediaRequest {
    pub kind: String,
    pub mimetype: String,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    pub data_base64: String,
}

/// A contact's media message, encrypted and stored, ready to send.
#[derive(Clone, Debug)]
pub struct MediaContent {
    pub kind: MediaKind,
    pub mimetype: String,
    pub filename: Option<String>,
    pub caption: Option<String>,
    pub stored: Stored,
    pub media_key: [u8; 32],
    pub file_sha256: [u8; 32],
    pub file_enc_sha256: [u8; 32],
    pub file_length: u64,
    pub media_key_timestamp: i64,
}

/// Media the client sent, as the contact saw it after decrypting the blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MediaSummary {
    pub kind: MediaKind,
    pub mimetype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    pub direct_path: String,
    /// Size and SHA-256 (hex) of the decrypted file; absent when it could not
    /// be fetched or decrypted (then `error` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The message's `file_length`, `file_sha256` and `file_enc_sha256`
    /// agree with the blob and the decrypted file.
    pub hashes_match: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaRequestError {
    #[error(
        "media kind {0:?} is unknown; use \"image\", \"video\", \"audio\", \"voice\" or \"document\""
    )]
    Kind(String),
    #[error("media data_base64 is not standard base64: {0}")]
    Base64(String),
    #[error("media data is empty; give the file's bytes in data_base64")]
    Empty,
    #[error("media mimetype is empty; give one like image/jpeg or application/pdf")]
    Mimetype,
    #[error("this server has no media host")]
    NoHost,
    #[error("media encryption failed: {0}")]
    Crypto(#[from] crypto::MediaCryptoError),
}

impl MediaContent {
    /// Encrypts the file with a fresh media key and stores the blob.
    pub fn prepare(store: &MediaStore, req: &MediaRequest) -> Result<Arc<Self>, MediaRequestError> {
        use base64::Engine as _;
        let kind =
            MediaKind::parse(&req.kind).ok_or_else(|| MediaRequestError::Kind(req.kind.clone()))?;
        let data = base64::prelude::BASE64_STANDARD
            .decode(req.data_base64.trim())
            .map_err(|e| MediaRequestError::Base64(e.to_string()))?;
        if data.is_empty() {
            return Err(MediaRequestError::Empty);
        }
        if req.mimetype.trim().is_empty() {
            return Err(MediaRequestError::Mimetype);
        }
        let media_key: [u8; 32] = rand::random();
        let enc = crypto::encrypt(&data, &media_key, kind)?;
        let stored = store.store(kind.stanza_mediatype(), enc.blob);
        Ok(Arc::new(Self {
            kind,
            mimetype: req.mimetype.clone(),
            filename: req.filename.clone().filter(|f| !f.is_empty()),
            caption: req.caption.clone().filter(|c| !c.is_empty()),
            stored,
            media_key,
            file_sha256: enc.file_sha256,
            file_enc_sha256: enc.file_enc_sha256,
            file_length: data.len() as u64,
            media_key_timestamp: super::stanza::now_secs() as i64,
        }))
    }

    pub fn to_message(&self) -> wa::Message {
        let mut message = wa::Message::default();
        match self.kind {
            MediaKind::Image => {
                message.image_message = buffa::MessageField::some(wa::message::ImageMessage {
                    url: Some(self.stored.url.clone()),
                    mimetype: Some(self.mimetype.clone()),
                    caption: self.caption.clone(),
                    file_sha256: Some(self.file_sha256.to_vec()),
                    file_length: Some(self.file_length),
                    media_key: Some(self.media_key.to_vec()),
                    file_enc_sha256: Some(self.file_enc_sha256.to_vec()),
                    direct_path: Some(self.stored.direct_path.clone()),
                    media_key_timestamp: Some(self.media_key_timestamp),
                    ..Default::default()
                });
            }
            MediaKind::Video => {
                message.video_message = buffa::MessageField::some(wa::message::VideoMessage {
                    url: Some(self.stored.url.clone()),
                    mimetype: Some(self.mimetype.clone()),
                    caption: self.caption.clone(),
                    file_sha256: Some(self.file_sha256.to_vec()),
                    file_length: Some(self.file_length),
                    media_key: Some(self.media_key.to_vec()),
                    file_enc_sha256: Some(self.file_enc_sha256.to_vec()),
                    direct_path: Some(self.stored.direct_path.clone()),
                    media_key_timestamp: Some(self.media_key_timestamp),
                    ..Default::default()
                });
            }
            MediaKind::Audio | MediaKind::Voice => {
                // Audio has no caption in WhatsApp; a voice note is `ptt`.
                message.audio_message = buffa::MessageField::some(wa::message::AudioMessage {
                    url: Some(self.stored.url.clone()),
                    mimetype: Some(self.mimetype.clone()),
                    file_sha256: Some(self.file_sha256.to_vec()),
                    file_length: Some(self.file_length),
                    ptt: Some(self.kind == MediaKind::Voice),
                    media_key: Some(self.media_key.to_vec()),
                    file_enc_sha256: Some(self.file_enc_sha256.to_vec()),
                    direct_path: Some(self.stored.direct_path.clone()),
                    media_key_timestamp: Some(self.media_key_timestamp),
                    ..Default::default()
                });
            }
            MediaKind::Document => {
                message.document_message =
                    buffa::MessageField::some(wa::message::DocumentMessage {
                        url: Some(self.stored.url.clone()),
                        mimetype: Some(self.mimetype.clone()),
                        title: self.filename.clone(),
                        file_sha256: Some(self.file_sha256.to_vec()),
                        file_length: Some(self.file_length),
                        media_key: Some(self.media_key.to_vec()),
                        file_name: self.filename.clone(),
                        file_enc_sha256: Some(self.file_enc_sha256.to_vec()),
                        direct_path: Some(self.stored.direct_path.clone()),
                        media_key_timestamp: Some(self.media_key_timestamp),
                        caption: self.caption.clone(),
                        ..Default::default()
                    });
            }
        }
        message
    }
}

/// The references a media message carries, whichever kind it is.
struct Refs<'a> {
    kind: MediaKind,
    mimetype: Option<&'a String>,
    filename: Option<&'a String>,
    caption: Option<&'a String>,
    url: Option<&'a String>,
    direct_path: Option<&'a String>,
    media_key: Option<&'a Vec<u8>>,
    file_sha256: Option<&'a Vec<u8>>,
    file_enc_sha256: Option<&'a Vec<u8>>,
    file_length: Option<u64>,
}

fn refs_of(message: &wa::Message) -> Option<Refs<'_>> {
    if let Some(m) = message.image_message.as_option() {
        return Some(Refs {
            kind: MediaKind::Image,
            mimetype: m.mimetype.as_ref(),
            filename: None,
            caption: m.caption.as_ref(),
            url: m.url.as_ref(),
            direct_path: m.direct_path.as_ref(),
            media_key: m.media_key.as_ref(),
            file_sha256: m.file_sha256.as_ref(),
            file_enc_sha256: m.file_enc_sha256.as_ref(),
            file_length: m.file_length,
        });
    }
    if let Some(m) = message.video_message.as_option() {
        return Some(Refs {
            kind: MediaKind::Video,
            mimetype: m.mimetype.as_ref(),
            filename: None,
            caption: m.caption.as_ref(),
            url: m.url.as_ref(),
            direct_path: m.direct_path.as_ref(),
            media_key: m.media_key.as_ref(),
            file_sha256: m.file_sha256.as_ref(),
            file_enc_sha256: m.file_enc_sha256.as_ref(),
            file_length: m.file_length,
        });
    }
    if let Some(m) = message.audio_message.as_option() {
        return Some(Refs {
            kind: if m.ptt == Some(true) {
                MediaKind::Voice
            } else {
                MediaKind::Audio
            },
            mimetype: m.mimetype.as_ref(),
            filename: None,
            caption: None,
            url: m.url.as_ref(),
            direct_path: m.direct_path.as_ref(),
            media_key: m.media_key.as_ref(),
            file_sha256: m.file_sha256.as_ref(),
            file_enc_sha256: m.file_enc_sha256.as_ref(),
            file_length: m.file_length,
        });
    }
    if let Some(m) = message.document_message.as_option() {
        return Some(Refs {
            kind: MediaKind::Document,
            mimetype: m.mimetype.as_ref(),
            filename: m.file_name.as_ref(),
            caption: m.caption.as_ref(),
            url: m.url.as_ref(),
            direct_path: m.direct_path.as_ref(),
            media_key: m.media_key.as_ref(),
            file_sha256: m.file_sha256.as_ref(),
            file_enc_sha256: m.file_enc_sha256.as_ref(),
            file_length: m.file_length,
        });
    }
    None
}

/// What the contact makes of the media in `message`, if it holds any:
/// the blob fetched from the media host and decrypted with the message's key.
pub fn summarize(store: Option<&MediaStore>, message: &wa::Message) -> Option<MediaSummary> {
    let refs = refs_of(message)?;
    let mut summary = MediaSummary {
        kind: refs.kind,
        mimetype: refs.mimetype.cloned().unwrap_or_default(),
        filename: refs.filename.cloned(),
        caption: refs.caption.cloned(),
        direct_path: refs.direct_path.cloned().unwrap_or_default(),
        size: None,
        sha256: None,
        hashes_match: false,
        error: None,
    };
    let blob = store.and_then(|s| {
        refs.direct_path
            .or(refs.url)
            .and_then(|p| s.get(p))
            .or_else(|| refs.file_enc_sha256.and_then(|h| s.by_enc_sha256(h)))
    });
    let Some(blob) = blob else {
        summary.error = Some("the blob the message points at was never uploaded here".into());
        return Some(summary);
    };
    let Some(key) = refs.media_key else {
        summary.error = Some("the message carries no media key".into());
        return Some(summary);
    };
    match crypto::decrypt(&blob.data, key, refs.kind) {
        Ok(file) => {
            let sha = crypto::sha256(&file);
            summary.hashes_match = refs.file_sha256.is_some_and(|h| h[..] == sha)
                && refs
                    .file_enc_sha256
                    .is_some_and(|h| h[..] == blob.enc_sha256)
                && refs.file_length == Some(file.len() as u64);
            summary.size = Some(file.len() as u64);
            summary.sha256 = Some(sha.iter().map(|b| format!("{b:02x}")).collect());
        }
        Err(e) => summary.error = Some(e.to_string()),
    }
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_media_message_summarizes_to_its_own_file() {
        let store = MediaStore::default();
        store.set_host("127.0.0.1:1".into());
        let req = MediaRequest {
            kind: "document".into(),
            mimetype: "application/pdf".into(),
            filename: Some("a.pdf".into()),
            caption: None,
            data_base64: "JVBERi0xLjQK".into(),
        };
        let content = MediaContent::prepare(&store, &req).unwrap();
        let summary = summarize(Some(&store), &content.to_message()).unwrap();
        assert_eq!(summary.kind, MediaKind::Document);
        assert_eq!(summary.size, Some(9));
        assert!(summary.hashes_match, "{summary:?}");
        assert_eq!(
            summary.sha256.as_deref(),
            Some(
                crypto::sha256(b"%PDF-1.4\n")
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .as_str()
            )
        );
        assert!(
            summarize(None, &content.to_message())
                .unwrap()
                .error
                .is_some()
        );
        for kind in ["video", "audio", "voice"] {
            let req = MediaRequest {
                kind: kind.into(),
                mimetype: "audio/ogg; codecs=opus".into(),
                ..req.clone()
            };
            let content = MediaContent::prepare(&store, &req).unwrap();
            let summary = summarize(Some(&store), &content.to_message()).unwrap();
            assert_eq!(summary.kind.as_str(), kind);
            assert!(summary.hashes_match, "{summary:?}");
        }
        let bad = MediaRequest {
            kind: "sticker".into(),
            ..req.clone()
        };
        assert!(matches!(
            MediaContent::prepare(&store, &bad),
            Err(MediaRequestError::Kind(_))
        ));
    }
}
