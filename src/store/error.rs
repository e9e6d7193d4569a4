use std::path::PathBuf;

use thiserror::Error;

use super::codec::CodecError;
use super::seal::SealError;

/// Everything that can go wrong in walink's store layer.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "cannot create the state directory {path}: {source}; create it yourself (mode 0700) \
         or point daemon.state_dir at a writable place"
    )]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot open the state database at {path}: {source}; if another walinkd is running on \
         this state directory stop it first, otherwise the database may be damaged: restore a \
         backup or move the directory aside"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    #[error(
        "invalid account name {name:?}: {reason}; use letters, digits, '.', '_' or '-' \
         (1 to 64 characters)"
    )]
    InvalidAccountName { name: String, reason: &'static str },

    #[error(
        "state database failed to {op} in tree {tree} of account {account:?}: {source}; check \
         disk space and permissions of the state directory"
    )]
    Sled {
        account: String,
        tree: &'static str,
        op: &'static str,
        #[source]
        source: sled::Error,
    },

    #[error(
        "state database failed to {op}: {source}; check disk space and permissions of the \
         state directory"
    )]
    Database {
        op: &'static str,
        #[source]
        source: sled::Error,
    },

    #[error(
        "stored value {key} in tree {tree} of account {account:?} is unreadable: {source}; \
         restore a backup of this account or clear its session"
    )]
    Decode {
        account: String,
        tree: &'static str,
        key: String,
        #[source]
        source: CodecError,
    },

    #[error(
        "stored value {key} in tree {tree} of account {account:?} cannot be unsealed: {source}"
    )]
    Sealed {
        account: String,
        tree: &'static str,
        key: String,
        #[source]
        source: SealError,
    },

    #[error("cannot encode a value for tree {tree} of account {account:?}: {source}")]
    Encode {
        account: String,
        tree: &'static str,
        #[source]
        source: CodecError,
    },

    #[error(
        "stored value {key} in tree {tree} of account {account:?} is invalid: {reason}; \
         restore a backup of this account or clear its session"
    )]
    Invalid {
        account: String,
        tree: &'static str,
        key: String,
        reason: String,
    },
}

impl From<StoreError> for wacore::store::error::StoreError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Decode { .. }
            | StoreError::Sealed { .. }
            | StoreError::Encode { .. }
            | StoreError::Invalid { .. } => Self::Serialization(Box::new(err)),
            other => Self::Database(Box::new(other)),
        }
    }
}

/// Renders a sled key for an error message: text when it is printable, hex
/// otherwise, and never longer than a line.
pub(crate) fn describe_key(key: &[u8]) -> String {
    const MAX: usize = 64;
    let shown = &key[..key.len().min(MAX)];
    let more = if key.len() > MAX { "…" } else { "" };
    match std::str::from_utf8(shown) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => format!("{text:?}{more}"),
        _ => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{more}")
        }
    }
}
