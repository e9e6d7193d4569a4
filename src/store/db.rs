//! `StateDb`: the one sled database holding the live state of every account.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::backend::{LEGACY_PER_MESSAGE_TREES, SledBackend, adopt_per_account_trees};
use super::error::StoreError;
use super::seal::Sealer;

/// Longest account name accepted; it starts every key of the account.
const MAX_ACCOUNT_NAME: usize = 64;

/// sled's page cache. Its default (1 GiB) is sized for a database server, not
/// for a daemon on a small VPS; an account's working set is a few MiB, and
/// with the messages in SQLite sled holds only the sessions. The cache
/// fills to this whatever the working set (validation reads every record),
/// so it is what walinkd's memory grows to.
const CACHE_BYTES: u64 = 16 << 20;

/// The live state database (one per walinkd), shared by all accounts.
pub struct StateDb {
    path: PathBuf,
    db: sled::Db,
    /// One backend per account name, so every user of an account shares the
    /// same in-process counters and write gate.
    accounts: Mutex<HashMap<String, Arc<SledBackend>>>,
    /// Seals every account record when encryption at rest is on.
    sealer: Option<Arc<Sealer>>,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StateDb {
    /// Opens (or creates) the database in directory `path`. A missing
    /// directory is created with mode 0700: it holds private keys.
    pub fn open(path: &Path) -> Result<StateDb, StoreError> {
        StateDb::open_sealed(path, None)
    }

    /// [`Self::open`], with account records sealed by `sealer` (and sealed
    /// ones opened with it).
    pub fn open_sealed(path: &Path, sealer: Option<Arc<Sealer>>) -> Result<StateDb, StoreError> {
        create_private_dir(path)?;
        let config = sled::Config::new().path(path).cache_capacity(CACHE_BYTES);
        let db = open_catching_panics(|| config.open()).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        drop_legacy_message_trees(&db);
        let moved = adopt_per_account_trees(&db)?;
        if !moved.is_empty() {
            tracing::info!(
                accounts = moved.len(),
                "moved the stored state of {} account(s) to the shared trees",
                moved.len()
            );
        }
        Ok(StateDb {
            path: path.to_owned(),
            db,
            accounts: Mutex::new(HashMap::new()),
            sealer,
        })
    }

    /// The directory this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The storage backend of account `name` (created empty on first use).
    pub fn account(&self, name: &str) -> Result<Arc<SledBackend>, StoreError> {
        validate_account_name(name)?;
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(backend) = accounts.get(name) {
            return Ok(Arc::clone(backend));
        }
        let backend = Arc::new(SledBackend::open(&self.db, name, self.sealer.clone())?);
        accounts.insert(name.to_owned(), Arc::clone(&backend));
        Ok(backend)
    }

    /// Names of the accounts ever opened in this database (possibly empty
    /// after [`SledBackend::clear`]), sorted.
    #[cfg(test)]
    pub(crate) fn account_names(&self) -> Vec<String> {
        let Ok(registry) = self.db.open_tree(super::backend::ACCOUNTS_TREE) else {
            return Vec::new();
        };
        registry
            .iter()
            .keys()
            .filter_map(|key| String::from_utf8(key.ok()?.to_vec()).ok())
            .collect()
    }

    /// The sled database itself, for tests that write what an older
    /// walinkd left.
    #[cfg(test)]
    pub(crate) fn raw(&self) -> &sled::Db {
        &self.db
    }

    /// Every tree in the database but sled's default one, sorted.
    #[cfg(test)]
    pub(crate) fn tree_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .db
            .tree_names()
            .iter()
            .filter_map(|raw| String::from_utf8(raw.to_vec()).ok())
            .filter(|name| name != "__sled__default")
            .collect();
        names.sort();
        names
    }

    /// Makes every write so far durable on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(drop)
            .map_err(|source| StoreError::Database {
                op: "flush to disk",
                source,
            })
    }

    /// Bytes the database files take on disk (all accounts).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db
            .size_on_disk()
            .map_err(|source| StoreError::Database {
                op: "measure its size on disk",
                source,
            })
    }
}

/// Tree kinds where walinkd before `messages.db` kept each account's
/// messages. No release carried them, so they are dropped, not migrated
/// (with [`LEGACY_PER_MESSAGE_TREES`]), for every account in the
/// database, configured or not, before any backend opens its trees.
const LEGACY_MESSAGE_TREES: [&str; 8] = [
    "outbox",
    "outbox_ids",
    "outbox_pending",
    "outbox_failed",
    "inbox",
    "inbox_ids",
    "inbox_chats",
    "inbox_chat_stats",
];

fn drop_legacy_message_trees(db: &sled::Db) {
    for raw in db.tree_names() {
        let Some(name) = std::str::from_utf8(&raw).ok() else {
            continue;
        };
        let legacy = name
            .strip_prefix("acct:")
            .and_then(|rest| rest.rsplit_once(':'))
            .is_some_and(|(_, kind)| {
                LEGACY_MESSAGE_TREES.contains(&kind) || LEGACY_PER_MESSAGE_TREES.contains(&kind)
            });
        if legacy && let Err(e) = db.drop_tree(&raw) {
            tracing::warn!(tree = name, error = %e, "could not drop a message tree left by an older walinkd");
        }
    }
}

/// Runs a sled open. sled 0.34 panics, rather than failing, on some states
/// a crash leaves behind: `make chaos` hit "tried to serialize
/// Uninitialized" in its snapshot code while reopening after kill -9, and
/// walinkd then died at every start. As an error, the caller's path for a
/// damaged database (move it aside, restore from backups) runs instead.
pub(crate) fn open_catching_panics<T>(open: impl FnOnce() -> sled::Result<T>) -> sled::Result<T> {
    quiet_panics_while_opening();
    OPENING.set(true);
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(open));
    OPENING.set(false);
    opened.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(sled::Error::ReportableBug(format!(
            "sled panicked while opening the database: {what}"
        )))
    })
}

thread_local! {
    /// This thread is inside [`open_catching_panics`].
    static OPENING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps the panic hook from reporting the panics `open_catching_panics`
/// turns into errors: the caller reports those as a damaged database, and
/// the default hook's backtrace (with `RUST_BACKTRACE` set) parses the
/// binary's debug info into a cache that stays: a debug walinkd that had
/// caught one grew by 90 MiB of anonymous memory. Other panics, and sled's
/// on its own threads, reach the previous hook as before.
fn quiet_panics_while_opening() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !OPENING.get() {
                previous(info);
            }
        }));
    });
}

fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StoreError::CreateDir {
            path: path.to_owned(),
            source,
        })
}

/// Account names start every key of their account and name its backup
/// trees (`backup:<name>:<kind>`), so they must not contain the separator
/// or anything a file or log would mangle.
pub(crate) fn validate_account_name(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_ACCOUNT_NAME {
        Some("it is longer than 64 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("it contains a character that is not allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidAccountName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
