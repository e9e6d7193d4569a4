use std::path::{Path, PathBuf};

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

    #[error("cannot open the state database at {path}: {source}; {}", Fault::of_sled(source).advice(path))]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// The message database (SQLite) failed.
    #[error("{}", describe_messages(path, op, *fault, detail))]
    Messages {
        path: PathBuf,
        op: &'static str,
        fault: Fault,
        detail: String,
    },

    /// A record whatsapp-rust keeps per message was asked of a backend
    /// before its account's message store was attached (see
    /// `SledBackend::keep_library_records_in`).
    #[error(
        "account {account:?} cannot {op}: its message database is not attached yet (a bug in \
         walinkd, which attaches it before the account connects); restart walinkd"
    )]
    NotAttached { account: String, op: &'static str },

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

impl StoreError {
    /// What kind of failure this is: only [`Fault::Damaged`] means the data
    /// itself is bad; the others are the disk's or the system's, and moving
    /// the files aside would not help (see `daemon/recovery.rs`).
    pub fn fault(&self) -> Fault {
        match self {
            StoreError::CreateDir { source, .. } => Fault::of_io(source),
            StoreError::Open { source, .. }
            | StoreError::Sled { source, .. }
            | StoreError::Database { source, .. } => Fault::of_sled(source),
            StoreError::Messages { fault, .. } => *fault,
            StoreError::InvalidAccountName { .. }
            | StoreError::Encode { .. }
            | StoreError::NotAttached { .. } => Fault::Other,
            StoreError::Sealed { .. } => Fault::Key,
            StoreError::Decode { .. } | StoreError::Invalid { .. } => Fault::Damaged,
        }
    }
}

/// Why a storage operation failed, as far as deciding what to do goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The data opened and failed its checks: restoring is the answer.
    Damaged,
    /// ENOSPC (or SQLite's "database or disk is full").
    DiskFull,
    /// EIO and other errors of the device.
    Io,
    /// EACCES/EPERM: the files belong to someone else or have the wrong mode.
    Permission,
    /// EROFS, or a file opened read-only.
    ReadOnly,
    /// Another process holds the database.
    Locked,
    /// The encryption key does not open the data.
    Key,
    /// Anything else (a bad argument, a bug).
    Other,
}

impl Fault {
    pub fn of_io(e: &std::io::Error) -> Fault {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Fault::DiskFull,
            Some(libc::EACCES) | Some(libc::EPERM) => Fault::Permission,
            Some(libc::EROFS) => Fault::ReadOnly,
            Some(libc::EAGAIN) => Fault::Locked,
            _ if e.kind() == std::io::ErrorKind::PermissionDenied => Fault::Permission,
            _ if e.kind() == std::io::ErrorKind::StorageFull => Fault::DiskFull,
            _ if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => Fault::ReadOnly,
            _ if e.kind() == std::io::ErrorKind::InvalidData => Fault::Damaged,
            _ if e.kind() == std::io::ErrorKind::UnexpectedEof => Fault::Damaged,
            _ => Fault::Io,
        }
    }

    /// sled reports every failure of its files as `Io`; only `Corruption`
    /// (and the panics `open_catching_panics` turns into `ReportableBug`)
    /// say the data is bad.
    pub fn of_sled(e: &sled::Error) -> Fault {
        match e {
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                Fault::Locked
            }
            sled::Error::Io(io) => Fault::of_io(io),
            sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => Fault::Damaged,
            sled::Error::CollectionNotFound(_) | sled::Error::Unsupported(_) => Fault::Other,
        }
    }

    pub fn of_sqlite(e: &rusqlite::Error) -> Fault {
        use rusqlite::ErrorCode;
        let rusqlite::Error::SqliteFailure(failure, _) = e else {
            return match e {
                rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)
                | rusqlite::Error::InvalidColumnType(..) => Fault::Damaged,
                _ => Fault::Other,
            };
        };
        match failure.code {
            // "file is not a database" is a damaged header, or (SQLCipher)
            // a wrong key; the key check file tells those apart before any
            // database is opened (daemon/recovery.rs).
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Fault::Damaged,
            ErrorCode::DiskFull => Fault::DiskFull,
            ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied => {
                Fault::Permission
            }
            ErrorCode::ReadOnly => Fault::ReadOnly,
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Fault::Locked,
            // SQLite's result codes carry no errno: an open that fails is
            // looked into by `probe_access` (messages/database.rs).
            ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => Fault::Io,
            _ => Fault::Other,
        }
    }

    /// What to do about it, for an error message about `path`.
    pub fn advice(self, path: &Path) -> String {
        let path = path.display();
        match self {
            Fault::Damaged => format!(
                "the data in {path} is damaged: walinkd restores the newest good backup at start, \
                 or run `walink restore ACCOUNT`"
            ),
            Fault::DiskFull => format!(
                "the filesystem holding {path} is full: free some space; walinkd carries on by \
                 itself once it can write again"
            ),
            Fault::Io => format!(
                "the disk holding {path} reported an I/O error: check it (`dmesg`, `smartctl`); \
                 nothing was moved or restored"
            ),
            Fault::Permission => format!(
                "permission denied on {path}: it must belong to the user walinkd runs as \
                 (`ls -ln {path}`, then `chown -R` it to that user and `chmod -R u+rwX,go-rwx` it)"
            ),
            Fault::ReadOnly => {
                format!("{path} is on a read-only filesystem or is read-only: make it writable")
            }
            Fault::Locked => {
                format!("another walinkd holds {path}: stop it first (`systemctl stop walink`)")
            }
            Fault::Key => format!(
                "{path} cannot be read with the configured encryption key: configure the key it \
                 was written with"
            ),
            Fault::Other => format!("while using {path}"),
        }
    }

    /// The health reason's prefix, as an operator would say it.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Damaged => "damaged data",
            Fault::DiskFull => "disk full",
            Fault::Io => "I/O error",
            Fault::Permission => "permission denied",
            Fault::ReadOnly => "read-only filesystem",
            Fault::Locked => "database locked",
            Fault::Key => "wrong encryption key",
            Fault::Other => "storage error",
        }
    }

    /// Faults of the disk or the system rather than of the data: they pass
    /// when the operator (or the disk) fixes them, and nothing is restored.
    pub fn is_environmental(self) -> bool {
        matches!(
            self,
            Fault::DiskFull | Fault::Io | Fault::Permission | Fault::ReadOnly
        )
    }
}

fn describe_messages(path: &Path, op: &str, fault: Fault, detail: &str) -> String {
    format!(
        "{}: the message database {} failed to {op} ({detail}); {}",
        fault.label(),
        path.display(),
        fault.advice(path)
    )
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
