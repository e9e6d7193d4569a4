//! Encryption at rest: AES-256-GCM envelopes for stored values.
//!
//! A sealed value is `[0x80][key id: 8][nonce: 12][ciphertext + tag]`. Its
//! first byte sits in the range the codec reserves for sealed envelopes, so
//! a plain record and a sealed one can never be confused. The key id (a hash
//! of the key, not the key) tells "sealed with another key" apart from
//! "damaged", which decides between refusing to start and restoring a backup.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::codec::FIRST_RESERVED_VERSION;

/// Envelope version of [`Sealer::seal`].
const SEALED_V1: u8 = FIRST_RESERVED_VERSION;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Bytes of a key: AES-256.
pub const KEY_LEN: usize = 32;
/// Bytes of the salt a passphrase is stretched with.
pub const SALT_LEN: usize = 16;

/// Why a key could not be loaded or a value could not be unsealed.
#[derive(Debug, Error)]
pub enum SealError {
    #[error(
        "cannot read the encryption key file {path}: {source}; check the path and that walinkd may read it"
    )]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the encryption key file {path} holds {found} bytes; it must hold exactly 32 random bytes, \
         raw or as 64 hex digits (create one with `head -c 32 /dev/urandom > FILE`)"
    )]
    KeyFormat { path: PathBuf, found: usize },
    #[error(
        "the data is sealed with encryption key {found}, but the configured key is {configured}; \
         configure the key it was sealed with"
    )]
    WrongKey { found: String, configured: String },
    #[error(
        "the data is sealed with encryption key {found}, but no key is configured; set \
         storage.key_file or provide the systemd credential walink.key"
    )]
    NoKey { found: String },
    #[error("the sealed value is damaged (authentication failed)")]
    Damaged,
    #[error("the sealed value is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("cannot derive a key from the passphrase: {0}")]
    Kdf(String),
}

/// An AES-256-GCM key and its id. Debug never shows the key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    key_id: [u8; KEY_ID_LEN],
    /// SQLCipher's key for `messages.db`: a subkey, so the database and the
    /// sealed records never share a key.
    database_key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn from_key(key: &[u8; KEY_LEN]) -> Sealer {
        let mut hash = Sha256::new();
        hash.update(b"walink key id v1");
        hash.update(key);
        let digest = hash.finalize();
        let mut key_id = [0; KEY_ID_LEN];
        key_id.copy_from_slice(&digest[..KEY_ID_LEN]);
        let mut database_key = [0; KEY_LEN];
        hkdf::Hkdf::<Sha256>::new(Some(b"walink subkeys v1"), key)
            .expand(b"messages.db sqlcipher", &mut database_key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Sealer {
            cipher: Aes256Gcm::new(&(*key).into()),
            key_id,
            database_key,
        }
    }

    /// The raw SQLCipher key of the message database, in hex (derived with
    /// HKDF-SHA256 from this key; used as is, no passphrase stretching).
    pub fn database_key_hex(&self) -> String {
        hex(&self.database_key)
    }

    /// Reads a key file: 32 raw bytes, or 64 hex digits (surrounding
    /// whitespace ignored), the two forms `head -c 32 /dev/urandom` and
    /// `openssl rand -hex 32` produce.
    pub fn from_key_file(path: &Path) -> Result<Sealer, SealError> {
        let bytes = std::fs::read(path).map_err(|source| SealError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        let key = parse_key(&bytes).ok_or_else(|| SealError::KeyFormat {
            path: path.to_owned(),
            found: bytes.len(),
        })?;
        Ok(Sealer::from_key(&key))
    }

    /// Stretches a passphrase with Argon2id (OWASP's default cost), so a
    /// stolen export file cannot be brute-forced cheaply.
    pub fn from_passphrase(passphrase: &[u8], salt: &[u8; SALT_LEN]) -> Result<Sealer, SealError> {
        let mut key = [0u8; KEY_LEN];
        argon2::Argon2::default()
            .hash_password_into(passphrase, salt, &mut key)
            .map_err(|e| SealError::Kdf(e.to_string()))?;
        Ok(Sealer::from_key(&key))
    }

    /// The key's id in hex: safe to log, names which key sealed what.
    pub fn key_id(&self) -> String {
        hex(&self.key_id)
    }

    /// Encrypts `plain`; `context` is authenticated, not stored, so a value
    /// moved to another place (another account or tree) fails to open.
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce = <[u8; NONCE_LEN]>::generate();
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a value written by [`Self::seal`] with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        let found = sealed_key_id(sealed).ok_or(SealError::Truncated(sealed.len()))?;
        if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != SEALED_V1 {
            return Err(SealError::Truncated(sealed.len()));
        }
        if found != self.key_id {
            return Err(SealError::WrongKey {
                found: hex(&found),
                configured: self.key_id(),
            });
        }
        let nonce: [u8; NONCE_LEN] = sealed[1 + KEY_ID_LEN..HEADER_LEN]
            .try_into()
            .map_err(|_| SealError::Truncated(sealed.len()))?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: context,
                },
            )
            .map_err(|_| SealError::Damaged)
    }
}

/// True when `value` is a sealed envelope rather than a plain record.
pub fn is_sealed(value: &[u8]) -> bool {
    value.first().is_some_and(|v| *v >= FIRST_RESERVED_VERSION)
}

/// The id of the key that sealed `value`, when it is long enough to say.
fn sealed_key_id(value: &[u8]) -> Option<[u8; KEY_ID_LEN]> {
    value.get(1..1 + KEY_ID_LEN)?.try_into().ok()
}

/// Opens `value` when it is sealed (with `sealer`, or fails naming the
/// key), and passes plain values through: a store that had no key yet keeps
/// working once one is configured, and is sealed as it is rewritten.
pub fn unseal<'a>(
    sealer: Option<&Sealer>,
    value: &'a [u8],
    context: &[u8],
) -> Result<std::borrow::Cow<'a, [u8]>, SealError> {
    if !is_sealed(value) {
        return Ok(std::borrow::Cow::Borrowed(value));
    }
    match sealer {
        Some(sealer) => sealer.open(value, context).map(std::borrow::Cow::Owned),
        None => Err(SealError::NoKey {
            found: sealed_key_id(value).map_or_else(|| "?".into(), |id| hex(&id)),
        }),
    }
}

fn parse_key(bytes: &[u8]) -> Option<[u8; KEY_LEN]> {
    if let Ok(raw) = <[u8; KEY_LEN]>::try_from(bytes) {
        return Some(raw);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if text.len() != KEY_LEN * 2 {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(key)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random salt for [`Sealer::from_passphrase`].
pub fn random_salt() -> [u8; SALT_LEN] {
    <[u8; SALT_LEN]>::generate()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(fill: u8) -> Sealer {
        Sealer::from_key(&[fill; KEY_LEN])
    }

    #[test]
    fn round_trip_and_reserved_first_byte() {
        let s = sealer(1);
        let sealed = s.seal(b"identity key", b"acct:sales:meta");
        assert!(is_sealed(&sealed));
        assert!(!is_sealed(&[1, 2, 3]));
        assert_ne!(&sealed[HEADER_LEN..], b"identity key");
        assert_eq!(
            s.open(&sealed, b"acct:sales:meta").unwrap(),
            b"identity key"
        );
        // Random nonces: sealing twice never gives the same bytes.
        assert_ne!(s.seal(b"x", b""), s.seal(b"x", b""));
    }

    #[test]
    fn wrong_key_is_named_not_mistaken_for_damage() {
        let sealed = sealer(1).seal(b"secret", b"ctx");
        match sealer(2).open(&sealed, b"ctx") {
            Err(SealError::WrongKey { found, configured }) => {
                assert_eq!(found, sealer(1).key_id());
                assert_eq!(configured, sealer(2).key_id());
            }
            other => panic!("expected WrongKey, got {other:?}"),
        }
        assert!(matches!(
            unseal(None, &sealed, b"ctx"),
            Err(SealError::NoKey { .. })
        ));
    }

    #[test]
    fn flipped_bytes_other_context_and_truncation_fail() {
        let s = sealer(3);
        let sealed = s.seal(b"secret value", b"ctx");
        for i in HEADER_LEN..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(s.open(&bad, b"ctx"), Err(SealError::Damaged)),
                "byte {i}"
            );
        }
        assert!(matches!(s.open(&sealed, b"other"), Err(SealError::Damaged)));
        for cut in 0..HEADER_LEN + TAG_LEN {
            assert!(s.open(&sealed[..cut], b"ctx").is_err(), "cut {cut}");
        }
    }

    #[test]
    fn plain_values_pass_through_unseal() {
        let plain = [1u8, 9, 9];
        assert_eq!(&*unseal(Some(&sealer(1)), &plain, b"").unwrap(), &plain);
        assert_eq!(&*unseal(None, &plain, b"").unwrap(), &plain);
    }

    #[test]
    fn key_files_raw_or_hex() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [7u8; KEY_LEN]).unwrap();
        let hexed = dir.path().join("hex");
        std::fs::write(&hexed, format!("{}\n", hex(&[7u8; KEY_LEN]))).unwrap();
        assert_eq!(
            Sealer::from_key_file(&raw).unwrap().key_id(),
            Sealer::from_key_file(&hexed).unwrap().key_id()
        );
        let short = dir.path().join("short");
        std::fs::write(&short, b"too short").unwrap();
        let err = Sealer::from_key_file(&short).unwrap_err().to_string();
        assert!(
            err.contains("32 random bytes") && err.contains("short"),
            "{err}"
        );
        let missing = Sealer::from_key_file(&dir.path().join("none")).unwrap_err();
        assert!(matches!(missing, SealError::KeyFile { .. }));
    }

    #[test]
    fn passphrases_derive_stable_distinct_keys() {
        let salt = [5u8; SALT_LEN];
        let a = Sealer::from_passphrase(b"correct horse", &salt).unwrap();
        let b = Sealer::from_passphrase(b"correct horse", &salt).unwrap();
        let c = Sealer::from_passphrase(b"wrong horse", &salt).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert_ne!(a.key_id(), c.key_id());
        assert_ne!(random_salt(), random_salt());
    }
}
