//! Params and results of the backup methods: `backup`, `backups`,
//! `restore`, `export`, `import`, and `clear_session`'s `purge`.

use serde::{Deserialize, Serialize};

use super::AccountState;

/// Largest `data` of one `import` part, in base64 characters: a request
/// line is at most [`super::MAX_LINE_BYTES`].
pub const MAX_IMPORT_PART: usize = 48 * 1024;
/// Largest account state `import` accepts, in bytes.
pub const MAX_IMPORT_BYTES: usize = 256 << 20;

/// Params of `clear_session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearSessionParams {
    pub account: String,
    /// Also delete every backup generation; by default the newest one is
    /// kept (never restored unless asked) in case the clear was a mistake.
    #[serde(default)]
    pub purge: bool,
}

/// Params of `restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreParams {
    pub account: String,
    /// Generation id from `backups`; the newest usable one when absent.
    #[serde(default)]
    pub snapshot: Option<u64>,
}

/// Params of `import`, sent in parts of at most [`MAX_IMPORT_PART`]
/// characters, in order, on any connection; the last part applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    pub account: String,
    /// Any string the client picks, the same for every part of one import.
    pub transfer: String,
    /// 0-based part number.
    pub part: u32,
    pub parts: u32,
    /// Base64 (standard, padded) of this part of the account state bytes
    /// that `export` returned.
    pub data: String,
}

/// One backup generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Generation id, increasing per account; `restore --snapshot ID`.
    pub id: u64,
    pub created_at: u64,
    /// The linked JID in the generation.
    pub jid: Option<String>,
    pub size_bytes: u64,
    pub schema_version: u8,
    /// SHA-256 of the generation's data, hex.
    pub checksum: String,
    /// Sealed with the encryption key.
    pub sealed: bool,
    /// Why it was taken: `scheduled`, `paired`, `connected`, `credentials`,
    /// `manual`, `before_clear`, `imported`.
    pub reason: String,
}

/// Result of `backup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupResult {
    pub account: String,
    /// False when the state equals the newest generation, which is returned.
    pub created: bool,
    pub snapshot: SnapshotEntry,
}

/// Result of `backups`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupsResult {
    pub account: String,
    pub snapshots: Vec<SnapshotEntry>,
}

/// Result of `restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreResult {
    pub account: String,
    /// The generation restored.
    pub snapshot: SnapshotEntry,
    pub state: AccountState,
    /// Why newer generations were passed over.
    pub skipped: Vec<String>,
}

/// Result of `export`: the account's state, unsealed; `walink export`
/// encrypts it with the user's passphrase or key before it touches a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportResult {
    pub account: String,
    pub jid: Option<String>,
    /// Base64 (standard, padded) of the account state bytes.
    pub data: String,
}

/// Result of `import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResult {
    pub account: String,
    /// Parts received so far.
    pub received: u32,
    pub parts: u32,
    /// The account's state once the last part was applied; `null` before.
    pub state: Option<AccountState>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Call, code};
    use super::*;

    #[test]
    fn backup_calls_parse_with_their_defaults() {
        assert_eq!(
            Call::parse("clear_session", json!({"account": "sales"})).unwrap(),
            Call::ClearSession(ClearSessionParams {
                account: "sales".into(),
                purge: false
            })
        );
        let restore = Call::parse("restore", json!({"account": "sales", "snapshot": 7})).unwrap();
        assert_eq!(restore.account(), Some("sales"));
        assert_eq!(
            restore,
            Call::Restore(RestoreParams {
                account: "sales".into(),
                snapshot: Some(7)
            })
        );
        assert!(Call::parse("backups", json!({"account": "sales"})).is_ok());
    }

    #[test]
    fn import_parts_are_checked() {
        let part = |part: u32, parts: u32, data: String| {
            Call::parse(
                "import",
                json!({"account": "s", "transfer": "t", "part": part, "parts": parts, "data": data}),
            )
        };
        assert!(part(0, 2, "AAAA".into()).is_ok());
        for bad in [
            part(2, 2, "AAAA".into()),
            part(0, 0, "AAAA".into()),
            part(0, 1, "A".repeat(MAX_IMPORT_PART + 1)),
        ] {
            assert_eq!(bad.unwrap_err().code, code::INVALID_PARAMS);
        }
    }
}
