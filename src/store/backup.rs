//! The backup database: generations of account snapshots, in a sled
//! database of its own (`<state_dir>/backup`), so damage to the live state
//! cannot take its backups with it.
//!
//! Per account, tree `backup:<account>:info` maps a generation id (u64
//! big-endian, so newest is last) to its [`SnapshotInfo`], and tree
//! `backup:<account>:chunks` holds the generation's bytes (sealed when a key
//! is configured) in pieces of [`CHUNK_BYTES`], keyed by the id and the
//! piece's number. The pieces are written first and the info record last,
//! so a generation is listed only once all of it is on disk. Tree
//! `backup:<account>:data`, the earlier layout, held the bytes as one value
//! under the id; generations stored that way are still read, and go as they
//! are pruned. Tree `backup_accounts` remembers accounts whose session was
//! cleared on purpose, so their last snapshot is kept but never restored by
//! itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::backend::AccountSnapshot;
use super::codec::{self, Record};
use super::seal::{self, SealError, Sealer};

/// sled's page cache for the backup database: it is written a few times an
/// hour and read only to restore.
const CACHE_BYTES: u64 = 8 << 20;
/// How long an open waits for sled's lock on the files to be let go.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How long the database stays open after its last operation (see
/// [`Open`]): long enough to carry a burst of backups, short enough that
/// what its cache holds goes soon after.
const LINGER: Duration = Duration::from_secs(5);
const CLEARED_TREE: &str = "backup_accounts";
/// The size of the pieces a generation is stored in. A sled leaf holds up
/// to 16 entries whatever their size, and a leaf past a quarter of a
/// segment (128 KiB) is kept as a file of its own under `blobs/`, rewritten
/// whole on every change and read whole by every lookup: with a generation
/// as one value, a leaf held several whole generations, and its 11–20 MB
/// blobs (230 MB on disk for 7 MB of data after a 10-minute chaos run) were
/// read into memory at each restore. Pieces this size keep a leaf well under
/// the blob threshold.
const CHUNK_BYTES: usize = 4096;

/// What is known about one stored generation, readable without its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Generation id, increasing per account.
    pub id: u64,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// The linked JID in the snapshot.
    pub jid: Option<String>,
    /// Bytes of keys and values in the snapshot.
    pub size_bytes: u64,
    /// Schema version of the snapshot encoding.
    pub schema_version: u8,
    /// SHA-256 of the unsealed snapshot bytes: verifies the data on restore
    /// and recognises a state identical to the previous generation.
    pub checksum: [u8; 32],
    /// Id of the key the data is sealed with; `None` when stored plain.
    pub sealed_with: Option<String>,
    /// Why it was taken: `scheduled`, `paired`, `credentials`, `manual`, …
    pub reason: String,
}

impl Record for SnapshotInfo {
    const NAME: &'static str = "snapshot info";
    const VERSION: u8 = 1;
}

impl SnapshotInfo {
    pub fn checksum_hex(&self) -> String {
        seal::hex(&self.checksum)
    }
}

/// Why the backup database failed.
#[derive(Debug, Error)]
pub enum BackupError {
    #[error(
        "cannot open the backup database at {path}: {source}; if another walinkd is running on \
         this state directory stop it first, otherwise move the directory aside"
    )]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(
        "backup database failed to {op}: {source}; check disk space and permissions of the state directory"
    )]
    Sled {
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error(
        "account {account:?} has no backup generation {id}; `walink backups {account}` lists them"
    )]
    Missing { account: String, id: u64 },
    #[error("backup generation {id} of account {account:?} is unusable: {reason}")]
    Damaged {
        account: String,
        id: u64,
        reason: String,
    },
    #[error("account {account:?} has no usable backup{}", tried_text(.tried))]
    NoneUsable { account: String, tried: Vec<String> },
    #[error("cannot encode a backup of account {account:?}: {reason}")]
    Encode { account: String, reason: String },
}

fn tried_text(tried: &[String]) -> String {
    if tried.is_empty() {
        String::new()
    } else {
        format!(" ({})", tried.join("; "))
    }
}

/// Result of [`BackupDb::store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub info: SnapshotInfo,
    /// False when the state equalled the newest generation: nothing was written.
    pub created: bool,
    /// Generations removed to keep the configured number.
    pub pruned: usize,
}

/// The generation ids to delete so that only the newest `keep` remain.
/// `ids` in any order; `keep` of 0 is treated as 1, the newest is never lost.
pub fn generations_to_prune(ids: &[u64], keep: usize) -> Vec<u64> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let excess = sorted.len().saturating_sub(keep.max(1));
    sorted.truncate(excess);
    sorted
}

/// SHA-256 of `bytes`.
pub fn checksum(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What [`BackupDb::check_newest`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum NewestCheck {
    /// The account has no generation.
    NoGeneration,
    /// The newest generation is the one checked before.
    Unchanged,
    /// The newest generation, `id`, was checked: `problem` says what is
    /// wrong with it, if anything.
    Checked { id: u64, problem: Option<String> },
}

pub struct BackupDb {
    path: PathBuf,
    sealer: Option<Arc<Sealer>>,
    shared: Arc<Shared>,
    /// The newest generation id of each account listed or stored since
    /// start. Only walinkd writes the database while it runs, so this stays
    /// true, and the validation can tell an unchanged newest generation
    /// without opening the database for every account every minute.
    newest: Mutex<HashMap<String, u64>>,
}

/// The database while some operation uses it, and for [`LINGER`] after.
/// sled keeps every page it has read or written in its cache, and a page
/// bigger than its cache shard (a generation is ~2 MB, a shard of an 8 MiB
/// cache 32 KiB) is never evicted: open for good, the database held every
/// generation it had touched (46 MiB of walinkd's heap after a 60 s chaos
/// run with three accounts). So it is closed once no operation has used it
/// for a while. Closed at once after each operation instead, a burst of
/// them (every account connecting after a restart or a mass drop takes a
/// backup) opened and recovered the whole database for each one: with 5,000
/// accounts that held backups to 12-18 a second, against 70-80 a second
/// while the start kept it open.
#[derive(Default)]
struct Open {
    db: Option<sled::Db>,
    users: usize,
    /// When the last operation ended, while none is running.
    idle_since: Option<Instant>,
    /// Whether a thread is waiting to close the database.
    closer: bool,
}

/// [`Open`] and the signal the closing thread waits on.
#[derive(Default)]
struct Shared {
    open: Mutex<Open>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the database has been idle for [`LINGER`] (or was closed
    /// by its owner), then closes it. Runs on a thread of its own, as
    /// [`BackupDb::run`]'s operations do, so what sled frees when it closes
    /// is collected here.
    fn close_when_idle(&self, path: &Path) {
        let mut open = self.lock();
        loop {
            let wait = match (open.users, open.idle_since) {
                _ if open.db.is_none() => break,
                (0, Some(since)) if since.elapsed() >= LINGER => break,
                (0, Some(since)) => LINGER - since.elapsed(),
                _ => LINGER,
            };
            open = self
                .changed
                .wait_timeout(open, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        open.closer = false;
        Self::close(open, path);
    }

    /// Flushes and closes the database, under the lock so no one reopens
    /// the files while this handle still holds sled's lock on them, then
    /// returns what it held to the system.
    fn close(mut open: MutexGuard<'_, Open>, path: &Path) {
        let Some(db) = open.db.take() else {
            return;
        };
        open.idle_since = None;
        if let Err(e) = db.flush() {
            tracing::error!(path = %path.display(), error = %e, "flushing the backup database failed: {e}");
        }
        drop(db);
        drop(open);
        super::memory::release_freed();
    }
}

/// A hold that keeps the database open for a series of operations; see
/// [`BackupDb::hold_open`].
pub struct HeldOpen<'a> {
    _lease: Lease<'a>,
}

/// One operation's hold on the open database.
struct Lease<'a> {
    owner: &'a BackupDb,
    db: Option<sled::Db>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = sled::Db;

    fn deref(&self) -> &sled::Db {
        self.db
            .as_ref()
            .expect("a lease holds the database until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let shared = &self.owner.shared;
        let mut open = shared.lock();
        self.db = None;
        open.users -= 1;
        if open.users > 0 {
            return;
        }
        open.idle_since = Some(Instant::now());
        if open.closer {
            shared.changed.notify_all();
            return;
        }
        let closer = shared.clone();
        let path = self.owner.path.clone();
        let spawned = std::thread::Builder::new()
            .name("backup-closer".into())
            .spawn(move || closer.close_when_idle(&path));
        match spawned {
            Ok(_) => open.closer = true,
            // No thread to wait with: close now, as before there was one.
            Err(_) => Shared::close(open, &self.owner.path),
        }
    }
}

impl Drop for BackupDb {
    fn drop(&mut self) {
        Shared::close(self.shared.lock(), &self.path);
        // The closing thread, if one waits, wakes to find nothing to close.
        self.shared.changed.notify_all();
    }
}

impl std::fmt::Debug for BackupDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupDb")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl BackupDb {
    /// Opens (or creates) the backup database in directory `path`; with a
    /// `sealer`, new generations are sealed with it. It is opened once here,
    /// so damage shows at start, then again by an operation that finds it
    /// closed. Every operation that writes flushes before it returns: the
    /// database may stay open after it, and walinkd may be killed then.
    pub fn open(path: &Path, sealer: Option<Arc<Sealer>>) -> Result<Self, BackupError> {
        use std::os::unix::fs::DirBuilderExt;
        // Backups hold the same keys as the live state: owner only.
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path);
        let backups = Self {
            path: path.to_owned(),
            sealer,
            shared: Arc::default(),
            newest: Mutex::default(),
        };
        backups.run(|_| Ok(()))?;
        Ok(backups)
    }

    /// Keeps the database open until the hold is dropped, so the
    /// operations meanwhile share one open: the start checks and spawns
    /// every account, each listing its generations, and opening (and
    /// recovering) the database once per account made it quadratic in the
    /// number of accounts.
    pub fn hold_open(&self) -> Result<HeldOpen<'_>, BackupError> {
        Ok(HeldOpen {
            _lease: self.lease()?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.shared.lock()
    }

    fn open_db(&self) -> Result<sled::Db, BackupError> {
        let config = sled::Config::new()
            .path(&self.path)
            .cache_capacity(CACHE_BYTES);
        // sled's threads can hold its file lock a moment after the handle
        // that closed is gone; only then is the database really taken.
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match super::db::open_catching_panics(|| config.open()) {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                opened => {
                    return opened.map_err(|source| BackupError::Open {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Runs `op` with the database open, on a thread of its own: sled
    /// defers what it frees to the bag of the thread that let go of it, and
    /// a thread that ends hands its bag over, so once the database is
    /// closed, everything it held can be collected.
    fn run<T: Send>(
        &self,
        op: impl FnOnce(&sled::Db) -> Result<T, BackupError> + Send,
    ) -> Result<T, BackupError> {
        let done = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let db = self.lease()?;
                    op(&db)
                })
                .join()
        });
        done.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn lease(&self) -> Result<Lease<'_>, BackupError> {
        let mut open = self.lock();
        let db = match &open.db {
            Some(db) => db.clone(),
            None => open.db.insert(self.open_db()?).clone(),
        };
        open.users += 1;
        Ok(Lease {
            owner: self,
            db: Some(db),
        })
    }

    fn trees(db: &sled::Db, account: &str) -> Result<Trees, BackupError> {
        let open = |kind: &str| {
            db.open_tree(format!("backup:{account}:{kind}"))
                .map_err(sled_err("open a tree"))
        };
        Ok(Trees {
            info: open("info")?,
            chunks: open("chunks")?,
            legacy: open("data")?,
        })
    }

    fn context(account: &str, id: u64) -> Vec<u8> {
        format!("walink backup {account} {id}").into_bytes()
    }

    /// Stores `snapshot` as a new generation unless it equals the newest
    /// one, then prunes to `keep` generations. Flushed before it returns.
    pub fn store(
        &self,
        snapshot: &AccountSnapshot,
        reason: &str,
        keep: usize,
        now_ms: i64,
    ) -> Result<Stored, BackupError> {
        self.run(|db| self.store_in(db, snapshot, reason, keep, now_ms))
    }

    fn store_in(
        &self,
        db: &sled::Db,
        snapshot: &AccountSnapshot,
        reason: &str,
        keep: usize,
        now_ms: i64,
    ) -> Result<Stored, BackupError> {
        let account = snapshot.account();
        let bytes = snapshot.to_bytes().map_err(|e| BackupError::Encode {
            account: account.to_owned(),
            reason: e.to_string(),
        })?;
        let sum = checksum(&bytes);
        let trees = Self::trees(db, account)?;
        let newest = self.list_in(db, account)?.into_iter().next();
        // A damaged newest generation must not pass for a good copy of an
        // unchanged state: then it is stored again.
        if let Some(newest) = newest.filter(|n| self.holds(n, &trees, snapshot, &sum)) {
            return Ok(Stored {
                info: newest,
                created: false,
                pruned: 0,
            });
        }
        let id = trees
            .info
            .last()
            .map_err(sled_err("read"))?
            .and_then(|(k, _)| <[u8; 8]>::try_from(k.as_ref()).ok())
            .map_or(1, |k| u64::from_be_bytes(k) + 1);
        let info = SnapshotInfo {
            id,
            created_at_ms: now_ms,
            jid: snapshot.jid(),
            size_bytes: snapshot.size_bytes(),
            schema_version: bytes.first().copied().unwrap_or_default(),
            checksum: sum,
            sealed_with: self.sealer.as_ref().map(|s| s.key_id()),
            reason: reason.to_owned(),
        };
        let data = match &self.sealer {
            Some(sealer) => sealer.seal(&bytes, &Self::context(account, id)),
            None => bytes,
        };
        let info_bytes = codec::encode(&info).map_err(|e| BackupError::Encode {
            account: account.to_owned(),
            reason: e.to_string(),
        })?;
        // Pieces left under this id by a store that never wrote its info
        // record would otherwise be read as part of this generation.
        let mut pieces = remove_all(trees.chunks.scan_prefix(id.to_be_bytes()))?;
        for (n, piece) in (0u32..).zip(data.chunks(CHUNK_BYTES)) {
            pieces.insert(&chunk_key(id, n)[..], piece);
        }
        trees
            .chunks
            .apply_batch(pieces)
            .map_err(sled_err("write a generation"))?;
        trees
            .info
            .insert(id.to_be_bytes(), info_bytes)
            .map_err(sled_err("write a generation"))?;
        self.note_newest(account, Some(id));
        let pruned = Self::prune_in(db, account, keep)?;
        if snapshot.jid().is_some() {
            Self::set_cleared_in(db, account, false)?;
        }
        db.flush().map_err(sled_err("flush to disk"))?;
        Ok(Stored {
            info,
            created: true,
            pruned,
        })
    }

    /// Generation `info` is intact and holds the state of `snapshot`, whose
    /// bytes' checksum is `sum` (see [`AccountSnapshot::same_state_as`]).
    fn holds(
        &self,
        info: &SnapshotInfo,
        trees: &Trees,
        snapshot: &AccountSnapshot,
        sum: &[u8; 32],
    ) -> bool {
        let Some(bytes) = self.intact(snapshot.account(), info, trees) else {
            return false;
        };
        info.checksum == *sum
            || AccountSnapshot::from_bytes(&bytes)
                .is_ok_and(|held| snapshot.same_state_as(&held, self.sealer.as_deref()))
    }

    /// The data of generation `info`, unsealed, if it is there and matches
    /// its checksum.
    fn intact(&self, account: &str, info: &SnapshotInfo, trees: &Trees) -> Option<Vec<u8>> {
        let data = trees.data(info.id).ok()??;
        let bytes = seal::unseal(
            self.sealer.as_deref(),
            &data,
            &Self::context(account, info.id),
        )
        .ok()?;
        (checksum(&bytes) == info.checksum).then(|| bytes.into_owned())
    }

    /// Removes all but the newest `keep` generations; returns how many went.
    pub fn prune(&self, account: &str, keep: usize) -> Result<usize, BackupError> {
        self.run(|db| {
            let pruned = Self::prune_in(db, account, keep)?;
            db.flush().map_err(sled_err("flush to disk"))?;
            Ok(pruned)
        })
    }

    fn prune_in(db: &sled::Db, account: &str, keep: usize) -> Result<usize, BackupError> {
        let trees = Self::trees(db, account)?;
        let ids: Vec<u64> = trees
            .info
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 8]>::try_from(k.as_ref()).ok().map(u64::from_be_bytes))
            .collect();
        let doomed = generations_to_prune(&ids, keep);
        // The info record goes first: a generation is never listed with
        // part of its data gone.
        for id in &doomed {
            let key = id.to_be_bytes();
            trees.info.remove(key).map_err(sled_err("delete"))?;
            trees.legacy.remove(key).map_err(sled_err("delete"))?;
        }
        // Every piece below the oldest generation kept goes, pruned or left
        // behind by an interrupted store or prune alike.
        let oldest_kept = ids.iter().filter(|id| !doomed.contains(id)).min();
        let below = match oldest_kept {
            Some(&id) => trees.chunks.range(..chunk_key(id, 0)),
            None => trees.chunks.range::<&[u8], _>(..),
        };
        let pieces = remove_all(below)?;
        trees
            .chunks
            .apply_batch(pieces)
            .map_err(sled_err("delete"))?;
        Ok(doomed.len())
    }

    /// Every generation of `account`, newest first. A generation whose info
    /// record is damaged is listed with what is known (its id).
    pub fn list(&self, account: &str) -> Result<Vec<SnapshotInfo>, BackupError> {
        self.run(|db| self.list_in(db, account))
    }

    fn list_in(&self, db: &sled::Db, account: &str) -> Result<Vec<SnapshotInfo>, BackupError> {
        let info_tree = Self::trees(db, account)?.info;
        let mut out = Vec::new();
        for item in info_tree.iter().rev() {
            let (key, value) = item.map_err(sled_err("read"))?;
            let Ok(id) = <[u8; 8]>::try_from(key.as_ref()).map(u64::from_be_bytes) else {
                continue;
            };
            out.push(
                codec::decode::<SnapshotInfo>(&value).unwrap_or(SnapshotInfo {
                    id,
                    created_at_ms: 0,
                    jid: None,
                    size_bytes: 0,
                    schema_version: 0,
                    checksum: [0; 32],
                    sealed_with: None,
                    reason: "damaged info record".into(),
                }),
            );
        }
        self.note_newest(account, out.first().map(|info| info.id));
        Ok(out)
    }

    fn note_newest(&self, account: &str, id: Option<u64>) {
        let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
        match id {
            Some(id) => newest.insert(account.to_owned(), id),
            None => newest.remove(account),
        };
    }

    /// Checks the newest generation of `account` whole, as [`Self::load`]
    /// does, unless it is generation `checked`, checked already. The
    /// database is opened only when the newest generation is not known to
    /// be `checked`.
    pub fn check_newest(
        &self,
        account: &str,
        checked: Option<u64>,
        verify: &(dyn Fn(&AccountSnapshot) -> Result<(), String> + Sync),
    ) -> Result<NewestCheck, BackupError> {
        let known = self
            .newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(account)
            .copied();
        if known.is_some() && known == checked {
            return Ok(NewestCheck::Unchanged);
        }
        self.run(|db| {
            let Some(newest) = self.list_in(db, account)?.into_iter().next() else {
                return Ok(NewestCheck::NoGeneration);
            };
            if Some(newest.id) == checked {
                return Ok(NewestCheck::Unchanged);
            }
            let problem = self
                .load_in(db, account, newest.id, verify)
                .err()
                .map(|e| e.to_string());
            Ok(NewestCheck::Checked {
                id: newest.id,
                problem,
            })
        })
    }

    /// Loads generation `id` and checks it whole: unsealed, checksum equal,
    /// every record decodes (with `verify`, which knows the live key).
    pub fn load(
        &self,
        account: &str,
        id: u64,
        verify: &(dyn Fn(&AccountSnapshot) -> Result<(), String> + Sync),
    ) -> Result<(SnapshotInfo, AccountSnapshot), BackupError> {
        self.run(|db| self.load_in(db, account, id, verify))
    }

    fn load_in(
        &self,
        db: &sled::Db,
        account: &str,
        id: u64,
        verify: &(dyn Fn(&AccountSnapshot) -> Result<(), String> + Sync),
    ) -> Result<(SnapshotInfo, AccountSnapshot), BackupError> {
        let damaged = |reason: String| BackupError::Damaged {
            account: account.to_owned(),
            id,
            reason,
        };
        let trees = Self::trees(db, account)?;
        let info = trees.info.get(id.to_be_bytes()).map_err(sled_err("read"))?;
        let data = trees.data(id)?;
        let (info, data) = match (info, data) {
            (Some(info), Some(data)) => (info, data),
            (None, None) => {
                return Err(BackupError::Missing {
                    account: account.to_owned(),
                    id,
                });
            }
            _ => return Err(damaged("half of the generation is missing".into())),
        };
        let info: SnapshotInfo = codec::decode(&info).map_err(|e| damaged(e.to_string()))?;
        let bytes = seal::unseal(self.sealer.as_deref(), &data, &Self::context(account, id))
            .map_err(|e: SealError| damaged(e.to_string()))?;
        if checksum(&bytes) != info.checksum {
            return Err(damaged(
                "checksum mismatch: the stored data changed since it was written".into(),
            ));
        }
        let snapshot = AccountSnapshot::from_bytes(&bytes).map_err(|e| damaged(e.to_string()))?;
        if snapshot.account() != account {
            return Err(damaged(format!(
                "it holds account {:?}",
                snapshot.account()
            )));
        }
        verify(&snapshot).map_err(damaged)?;
        Ok((info, snapshot))
    }

    /// The newest generation that loads and verifies; the reasons the newer
    /// ones were skipped come back in the error when none does.
    pub fn newest_valid(
        &self,
        account: &str,
        verify: &(dyn Fn(&AccountSnapshot) -> Result<(), String> + Sync),
    ) -> Result<(SnapshotInfo, AccountSnapshot, Vec<String>), BackupError> {
        self.run(|db| {
            let mut skipped = Vec::new();
            for info in self.list_in(db, account)? {
                match self.load_in(db, account, info.id, verify) {
                    Ok((info, snapshot)) => return Ok((info, snapshot, skipped)),
                    Err(e) => skipped.push(e.to_string()),
                }
            }
            Err(BackupError::NoneUsable {
                account: account.to_owned(),
                tried: skipped,
            })
        })
    }

    /// Deletes every generation of `account`.
    pub fn purge(&self, account: &str) -> Result<usize, BackupError> {
        self.run(|db| {
            self.note_newest(account, None);
            let removed = Self::prune_in(db, account, usize::MAX)?;
            let trees = Self::trees(db, account)?;
            let left = trees.info.len();
            for tree in [&trees.info, &trees.chunks, &trees.legacy] {
                tree.clear().map_err(sled_err("clear"))?;
            }
            Self::set_cleared_in(db, account, false)?;
            db.flush().map_err(sled_err("flush to disk"))?;
            Ok(removed + left)
        })
    }

    /// Marks `account` as cleared on purpose (or not any more): its
    /// generations are then never restored without being asked to.
    pub fn set_cleared(&self, account: &str, cleared: bool) -> Result<(), BackupError> {
        self.run(|db| {
            Self::set_cleared_in(db, account, cleared)?;
            db.flush().map_err(sled_err("flush to disk"))?;
            Ok(())
        })
    }

    fn set_cleared_in(db: &sled::Db, account: &str, cleared: bool) -> Result<(), BackupError> {
        let tree = db
            .open_tree(CLEARED_TREE)
            .map_err(sled_err("open a tree"))?;
        if cleared {
            tree.insert(account, &[1u8][..])
                .map_err(sled_err("write"))?;
        } else {
            tree.remove(account).map_err(sled_err("write"))?;
        }
        Ok(())
    }

    pub fn is_cleared(&self, account: &str) -> bool {
        self.run(|db| {
            db.open_tree(CLEARED_TREE)
                .and_then(|t| t.contains_key(account))
                .map_err(sled_err("read"))
        })
        .unwrap_or(false)
    }

    /// Runs `f` on tree `name` while the database is open.
    /// Whether the database is open now, in use or lingering.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.lock().db.is_some()
    }

    #[cfg(test)]
    pub(crate) fn with_raw_tree<T: Send>(
        &self,
        name: &str,
        f: impl FnOnce(&sled::Tree) -> T + Send,
    ) -> T {
        self.run(|db| Ok(f(&db.open_tree(name).map_err(sled_err("open a tree"))?)))
            .expect("open the backup database")
    }

    /// Flushes what the database holds, when open; a closed database has
    /// everything on disk already.
    pub fn flush(&self) -> Result<(), BackupError> {
        match &self.lock().db {
            Some(db) => db.flush().map(drop).map_err(sled_err("flush to disk")),
            None => Ok(()),
        }
    }
}

/// One account's trees.
struct Trees {
    info: sled::Tree,
    chunks: sled::Tree,
    legacy: sled::Tree,
}

impl Trees {
    /// The stored bytes of generation `id`, from its pieces or, stored
    /// before pieces, as one value.
    fn data(&self, id: u64) -> Result<Option<Vec<u8>>, BackupError> {
        let mut data = Vec::new();
        for piece in self.chunks.scan_prefix(id.to_be_bytes()).values() {
            data.extend_from_slice(&piece.map_err(sled_err("read"))?);
        }
        if !data.is_empty() {
            return Ok(Some(data));
        }
        let legacy = self
            .legacy
            .get(id.to_be_bytes())
            .map_err(sled_err("read"))?;
        Ok(legacy.map(|value| value.to_vec()))
    }
}

/// Key of piece `n` of generation `id`: both big-endian, so a generation's
/// pieces are in order and generations in id order.
fn chunk_key(id: u64, n: u32) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&id.to_be_bytes());
    key[8..].copy_from_slice(&n.to_be_bytes());
    key
}

/// A batch removing every key `entries` yields.
fn remove_all(entries: sled::Iter) -> Result<sled::Batch, BackupError> {
    let mut batch = sled::Batch::default();
    for key in entries.keys() {
        batch.remove(key.map_err(sled_err("read"))?);
    }
    Ok(batch)
}

fn sled_err(op: &'static str) -> impl Fn(sled::Error) -> BackupError {
    move |source| BackupError::Sled { op, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_generations() {
        assert_eq!(generations_to_prune(&[5, 1, 3, 2, 4], 3), vec![1, 2]);
        assert_eq!(generations_to_prune(&[1, 2], 5), Vec::<u64>::new());
        assert_eq!(generations_to_prune(&[7, 9], 0), vec![7]);
        assert_eq!(generations_to_prune(&[], 2), Vec::<u64>::new());
    }

    #[test]
    fn checksum_is_sha256() {
        assert_eq!(
            seal::hex(&checksum(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
