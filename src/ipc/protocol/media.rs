//! Params and result of `media`: a received message's file, downloaded,
//! decrypted and checked by walinkd, written where the client asks.

use serde::{Deserialize, Serialize};

/// Params of `media`. `path` or `dir` (absolute, as walinkd sees the
/// file system); neither is `dir` = the daemon's working directory, which
/// is rarely what a client means, so one of them is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaParams {
    pub account: String,
    /// The message, as `messages` lists it.
    pub id: String,
    /// Write exactly this file (replaced if it exists).
    #[serde(default)]
    pub path: Option<String>,
    /// Write into this directory, as `ID.EXT` (the extension from the
    /// mimetype).
    #[serde(default)]
    pub dir: Option<String>,
}

/// Result of `media`: the file written, checked against the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaResult {
    pub account: String,
    pub id: String,
    /// Where the file is (mode 0640).
    pub path: String,
    /// `image`, `video`, `audio`, `voice`, `document` or `sticker`.
    pub kind: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the file, hex: what the message says it is.
    pub sha256: String,
    pub mimetype: Option<String>,
    /// The name the sender gave a document.
    pub filename: Option<String>,
}

/// Params of `media_part`: a received file, carried to the client in parts
/// so the client writes it wherever it may (walinkd, a hardened service,
/// may write only its state directory). Part 0 fetches and checks the file
/// afresh; the parts after it come in order, on the same `transfer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaPartParams {
    pub account: String,
    /// The message, as `messages` lists it.
    pub id: String,
    /// Any name the client picks (letters, digits, `-`, `_`).
    pub transfer: String,
    /// 0-based part number.
    pub part: u32,
}

/// Result of `media_part`: what `media` says of the file, and this part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaPartResult {
    pub account: String,
    pub id: String,
    pub transfer: String,
    pub part: u32,
    /// How many parts the file takes (at least 1).
    pub parts: u32,
    pub kind: String,
    /// Bytes of the whole file.
    pub size: u64,
    /// SHA-256 of the whole file, hex, as checked against the message.
    pub sha256: String,
    pub mimetype: Option<String>,
    pub filename: Option<String>,
    /// Base64 (standard, padded) of this part: at most
    /// [`super::MAX_FILE_PART`] characters.
    pub data: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Call, code};

    #[test]
    fn media_takes_one_absolute_destination_and_a_message_id() {
        let parse = |params| Call::parse("media", params);
        let ok = parse(json!({"account": "sales", "id": "3EB0AB", "dir": "/srv/in"})).unwrap();
        assert!(matches!(ok, Call::Media(p) if p.dir.as_deref() == Some("/srv/in")));
        assert!(parse(json!({"account": "sales", "id": "3EB0AB", "path": "/srv/a.jpg"})).is_ok());
        for bad in [
            json!({"account": "sales", "id": "3EB0AB"}),
            json!({"account": "sales", "id": "3EB0AB", "path": "a.jpg"}),
            json!({"account": "sales", "id": "3EB0AB", "path": "/a", "dir": "/b"}),
            json!({"account": "sales", "id": "../etc", "dir": "/srv"}),
            json!({"account": "sales", "id": "3EB0AB", "dir": "/srv", "key": "x"}),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.code, code::INVALID_PARAMS, "{bad}: {e}");
        }
    }
}
