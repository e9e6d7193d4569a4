//! Value encoding for everything walink keeps in sled.
//!
//! A stored value is `[schema version: u8][bincode 2 payload]`. The version
//! byte lets a later walink recognise (and migrate, or refuse with a clear
//! message) records written by an older one instead of misreading them.
//! Versions `0x80..=0xFF` are reserved for sealed (encrypted) envelopes, so
//! encryption at rest can be added without a second framing scheme.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Largest payload a single record may claim while decoding. A flipped length
/// prefix in a damaged file must end in an error, not in a huge allocation.
const MAX_RECORD_BYTES: usize = 256 << 20;

/// First version value reserved for sealed envelopes (see module docs).
pub const FIRST_RESERVED_VERSION: u8 = 0x80;

/// A type walink stores as one sled value.
pub trait Record: Serialize + DeserializeOwned {
    /// Human name of the record, used in error messages.
    const NAME: &'static str;
    /// Schema version written ahead of the payload.
    const VERSION: u8;
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("{record} record is empty (0 bytes): the value was truncated or never written")]
    Empty { record: &'static str },

    #[error(
        "{record} record has schema version {found}, this walink reads version {expected}: \
         {hint}"
    )]
    WrongVersion {
        record: &'static str,
        found: u8,
        expected: u8,
        hint: &'static str,
    },

    #[error(
        "{record} record (schema version {version}) could not be decoded: {source}; \
         the value is truncated or damaged"
    )]
    Malformed {
        record: &'static str,
        version: u8,
        #[source]
        source: bincode::error::DecodeError,
    },

    #[error(
        "{record} record (schema version {version}) has {extra} unexpected trailing bytes; \
         the value is damaged"
    )]
    TrailingBytes {
        record: &'static str,
        version: u8,
        extra: usize,
    },

    #[error("{record} record could not be encoded: {source}")]
    Encode {
        record: &'static str,
        #[source]
        source: bincode::error::EncodeError,
    },
}

fn config() -> Configuration<LittleEndian, Varint, Limit<MAX_RECORD_BYTES>> {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Encodes `value` behind its schema version byte.
pub fn encode<R: Record>(value: &R) -> Result<Vec<u8>, CodecError> {
    let payload =
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|source| {
            CodecError::Encode {
                record: R::NAME,
                source,
            }
        })?;
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(R::VERSION);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes a value written by [`encode`], checking its schema version first.
pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, CodecError> {
    let (&found, payload) = bytes
        .split_first()
        .ok_or(CodecError::Empty { record: R::NAME })?;
    if found != R::VERSION {
        let hint = if found >= FIRST_RESERVED_VERSION {
            "the value is sealed (encrypted); configure the encryption key"
        } else if found > R::VERSION {
            "it was written by a newer walink; upgrade walink or restore an older backup"
        } else {
            "it was written by an older walink that this version cannot migrate; \
             restore a backup or clear the session"
        };
        return Err(CodecError::WrongVersion {
            record: R::NAME,
            found,
            expected: R::VERSION,
            hint,
        });
    }
    let (value, read) = bincode::serde::decode_from_slice(payload, config()).map_err(|source| {
        CodecError::Malformed {
            record: R::NAME,
            version: found,
            source,
        }
    })?;
    if read != payload.len() {
        return Err(CodecError::TrailingBytes {
            record: R::NAME,
            version: found,
            extra: payload.len() - read,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        counter: u64,
        blob: Vec<u8>,
        maybe: Option<i64>,
    }

    impl Record for Sample {
        const NAME: &'static str = "sample";
        const VERSION: u8 = 3;
    }

    fn sample() -> Sample {
        Sample {
            name: "sales".into(),
            counter: u64::MAX - 7,
            blob: (0..=255).collect(),
            maybe: Some(-42),
        }
    }

    #[test]
    fn round_trip_keeps_every_field_and_writes_version_first() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes[0], 3, "schema version must be the first byte");
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample());
    }

    #[test]
    fn wrong_version_names_record_found_and_expected() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[0] = 9;
        let err = decode::<Sample>(&bytes).unwrap_err();
        match &err {
            CodecError::WrongVersion {
                record,
                found,
                expected,
                ..
            } => {
                assert_eq!((*record, *found, *expected), ("sample", 9, 3));
            }
            other => panic!("expected WrongVersion, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("sample") && msg.contains('9') && msg.contains('3'));
        assert!(msg.contains("newer walink"), "{msg}");
    }

    #[test]
    fn older_and_sealed_versions_get_their_own_advice() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[0] = 1;
        assert!(
            decode::<Sample>(&bytes)
                .unwrap_err()
                .to_string()
                .contains("older walink")
        );
        bytes[0] = 0x80;
        assert!(
            decode::<Sample>(&bytes)
                .unwrap_err()
                .to_string()
                .contains("sealed")
        );
    }

    #[test]
    fn truncated_bytes_are_an_error_at_every_cut() {
        let bytes = encode(&sample()).unwrap();
        assert!(matches!(
            decode::<Sample>(&[]),
            Err(CodecError::Empty { record: "sample" })
        ));
        for cut in 1..bytes.len() {
            let err = decode::<Sample>(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, CodecError::Malformed { version: 3, .. }),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let mut bytes = encode(&sample()).unwrap();
        bytes.extend_from_slice(&[1, 2]);
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(CodecError::TrailingBytes { extra: 2, .. })
        ));
    }

    #[test]
    fn absurd_length_prefix_fails_without_allocating_it() {
        // version, then a varint u64 length of ~2^60 for `name`.
        let bytes = [3u8, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(CodecError::Malformed { .. })
        ));
    }
}
