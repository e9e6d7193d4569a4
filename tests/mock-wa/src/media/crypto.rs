//! WhatsApp's media encryption, written from the scheme rather than taken
//! from the client library, so the client's own decryption is what is tested:
//! HKDF-SHA256 of the 32-byte media key (no salt, info `"WhatsApp <Kind>
//! Keys"`: Image, Video, Audio (voice notes too) or Document) gives 112 bytes: IV `[0..16]`, AES key `[16..48]`, MAC key
//! `[48..80]`. The blob is AES-256-CBC (PKCS#7) of the file followed by the
//! first 10 bytes of HMAC-SHA256(MAC key, IV ‖ ciphertext).

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};
use wacore_libsignal::crypto::{aes_256_cbc_decrypt_into, aes_256_cbc_encrypt_into};

const MAC_LEN: usize = 10;

/// The media types a contact sends and a client uploads in these tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    /// A voice note: an `AudioMessage` with `ptt`, under the audio keys.
    Voice,
    Document,
}

impl MediaKind {
    pub const ALL: [MediaKind; 5] = [
        Self::Image,
        Self::Video,
        Self::Audio,
        Self::Voice,
        Self::Document,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Voice => "voice",
            Self::Document => "document",
        }
    }

    /// The `mediatype` of the stanza's `<enc>` (a voice note is `ptt`).
    pub fn stanza_mediatype(self) -> &'static str {
        match self {
            Self::Voice => "ptt",
            other => other.as_str(),
        }
    }

    /// Each kind expands its media key with an info string of its own, so a
    /// key used as the wrong kind fails the MAC.
    fn hkdf_info(self) -> &'static [u8] {
        match self {
            Self::Image => b"WhatsApp Image Keys",
            Self::Video => b"WhatsApp Video Keys",
            Self::Audio | Self::Voice => b"WhatsApp Audio Keys",
            Self::Document => b"WhatsApp Document Keys",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaCryptoError {
    #[error("media blob of {0} bytes is too short to hold a MAC")]
    TooShort(usize),
    #[error("media MAC does not match: wrong media key or damaged blob")]
    BadMac,
    #[error("media blob does not decrypt with this key (bad padding or length)")]
    BadCiphertext,
    #[error("media key must be 32 bytes, got {0}")]
    BadKey(usize),
}

/// What a sender puts in the message next to the upload's `direct_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encrypted {
    /// The blob that is uploaded: ciphertext ‖ truncated MAC.
    pub blob: Vec<u8>,
    pub file_sha256: [u8; 32],
    pub file_enc_sha256: [u8; 32],
}

struct Keys {
    iv: [u8; 16],
    cipher: [u8; 32],
    mac: [u8; 32],
}

fn expand(media_key: &[u8], kind: MediaKind) -> Result<Keys, MediaCryptoError> {
    if media_key.len() != 32 {
        return Err(MediaCryptoError::BadKey(media_key.len()));
    }
    let mut out = [0u8; 112];
    hkdf::Hkdf::<Sha256>::new(None, media_key)
        .expand(kind.hkdf_info(), &mut out)
        .map_err(|_| MediaCryptoError::BadKey(media_key.len()))?;
    let mut keys = Keys {
        iv: [0; 16],
        cipher: [0; 32],
        mac: [0; 32],
    };
    keys.iv.copy_from_slice(&out[..16]);
    keys.cipher.copy_from_slice(&out[16..48]);
    keys.mac.copy_from_slice(&out[48..80]);
    Ok(keys)
}

fn mac(key: &[u8; 32], iv: &[u8], ciphertext: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(iv);
    m.update(ciphertext);
    m.finalize().into_bytes().into()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn encrypt(
    plaintext: &[u8],
    media_key: &[u8; 32],
    kind: MediaKind,
) -> Result<Encrypted, MediaCryptoError> {
    let keys = expand(media_key, kind)?;
    let mut blob = Vec::with_capacity(plaintext.len() + 16 + MAC_LEN);
    aes_256_cbc_encrypt_into(plaintext, &keys.cipher, &keys.iv, &mut blob)
        .map_err(|_| MediaCryptoError::BadCiphertext)?;
    let tag = mac(&keys.mac, &keys.iv, &blob);
    blob.extend_from_slice(&tag[..MAC_LEN]);
    Ok(Encrypted {
        file_sha256: sha256(plaintext),
        file_enc_sha256: sha256(&blob),
        blob,
    })
}

pub fn decrypt(
    blob: &[u8],
    media_key: &[u8],
    kind: MediaKind,
) -> Result<Vec<u8>, MediaCryptoError> {
    if blob.len() <= MAC_LEN {
        return Err(MediaCryptoError::TooShort(blob.len()));
    }
    let keys = expand(media_key, kind)?;
    let (ciphertext, tag) = blob.split_at(blob.len() - MAC_LEN);
    let expected = mac(&keys.mac, &keys.iv, ciphertext);
    if expected[..MAC_LEN] != *tag {
        return Err(MediaCryptoError::BadMac);
    }
    let mut out = Vec::with_capacity(ciphertext.len());
    aes_256_cbc_decrypt_into(ciphertext, &keys.cipher, &keys.iv, &mut out)
        .map_err(|_| MediaCryptoError::BadCiphertext)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore::download::{DownloadUtils, MediaType};

    fn media_type(kind: MediaKind) -> MediaType {
        match kind {
            MediaKind::Image => MediaType::Image,
            MediaKind::Video => MediaType::Video,
            MediaKind::Audio | MediaKind::Voice => MediaType::Audio,
            MediaKind::Document => MediaType::Document,
        }
    }

    #[test]
    fn the_client_library_decrypts_what_the_mock_encrypts() {
        for kind in MediaKind::ALL {
            let key = [7u8; 32];
            let file = b"a file of some bytes, longer than one AES block".repeat(3);
            let enc = encrypt(&file, &key, kind).unwrap();
            assert_eq!(enc.file_sha256, sha256(&file));
            assert_eq!(enc.file_enc_sha256, sha256(&enc.blob));
            let plain = DownloadUtils::verify_and_decrypt(&enc.blob, &key, media_type(kind))
                .expect("wacore decrypts the mock's blob");
            assert_eq!(plain, file);
        }
    }

    #[test]
    fn the_mock_decrypts_what_the_client_library_encrypts() {
        let file = vec![0xAB; 5000];
        for kind in MediaKind::ALL {
            let enc = wacore::upload::encrypt_media(&file, media_type(kind)).unwrap();
            let plain = decrypt(&enc.data_to_upload, &enc.media_key, kind).unwrap();
            assert_eq!(plain, file, "{kind:?}");
            assert_eq!(sha256(&enc.data_to_upload), enc.file_enc_sha256);
            // The kind is part of the key derivation.
            let other = if kind == MediaKind::Image {
                MediaKind::Video
            } else {
                MediaKind::Image
            };
            assert_eq!(
                decrypt(&enc.data_to_upload, &enc.media_key, other),
                Err(MediaCryptoError::BadMac),
                "{kind:?} as {other:?}"
            );
        }
    }

    #[test]
    fn damaged_or_short_blobs_are_refused() {
        let key = [1u8; 32];
        let mut enc = encrypt(b"x", &key, MediaKind::Image).unwrap();
        enc.blob[0] ^= 1;
        assert_eq!(
            decrypt(&enc.blob, &key, MediaKind::Image),
            Err(MediaCryptoError::BadMac)
        );
        assert_eq!(
            decrypt(&[0; 10], &key, MediaKind::Image),
            Err(MediaCryptoError::TooShort(10))
        );
        assert_eq!(
            decrypt(&enc.blob, &[0; 5], MediaKind::Image),
            Err(MediaCryptoError::BadKey(5))
        );
    }
}
