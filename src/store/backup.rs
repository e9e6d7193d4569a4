//! The backup database: generations of account snapshots, in a sled
//! database of its own (`<state_dir>/backup`), so damage to the live state
//! cannot take its backups with it.
//!
//! Per account, tree `backup:<account>:info` maps a generation id (u64
//! big-endian, so newest is last) to its [`SnapshotInfo`], and tree
//! `backup:<account>:data` maps the same id to the snapshot bytes, sealed
//! when a key is configured. Both are written in one transaction. Tree
//! `backup_accounts` remembers accounts whose session was cleared on
//! purpose, so their last snapshot is kept but never restored by itself.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::Transactional;
use thiserror::Error;

use super::backend::AccountSnapshot;
use super::codec::{self, Record};
use super::seal::{self, SealError, Sealer};

/// sled's page cache for the backup database: it is written a few times an
/// hour and read only to restore.
const CACHE_BYTES: u64 = 8 << 20;
const CLEARED_TREE: &str = "backup_accounts";

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

pub struct BackupDb {
    db: sled::Db,
    sealer: Option<Arc<Sealer>>,
}

impl std::fmt::Debug for BackupDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupDb").finish_non_exhaustive()
    }
}

impl BackupDb {
    /// Opens (or creates) the backup database in directory `path`; with a
    /// `sealer`, new generations are sealed with it.
    pub fn open(path: &std::path::Path, sealer: Option<Arc<Sealer>>) -> Result<Self, BackupError> {
        use std::os::unix::fs::DirBuilderExt;
        // Backups hold the same keys as the live state: owner only.
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path);
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| BackupError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self { db, sealer })
    }

    fn trees(&self, account: &str) -> Result<(sled::Tree, sled::Tree), BackupError> {
        let open = |kind: &str| {
            self.db
                .open_tree(format!("backup:{account}:{kind}"))
                .map_err(sled_err("open a tree"))
        };
        Ok((open("info")?, open("data")?))
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
        let account = snapshot.account();
        let bytes = snapshot.to_bytes().map_err(|e| BackupError::Encode {
            account: account.to_owned(),
            reason: e.to_string(),
        })?;
        let sum = checksum(&bytes);
        let (info_tree, data_tree) = self.trees(account)?;
        let newest = self.list(account)?.into_iter().next();
        // A damaged newest generation must not pass for a good copy of an
        // unchanged state: then it is stored again.
        if let Some(newest) =
            newest.filter(|n| n.checksum == sum && self.intact(account, n, &data_tree))
        {
            return Ok(Stored {
                info: newest,
                created: false,
                pruned: 0,
            });
        }
        let id = info_tree
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
        let key = id.to_be_bytes();
        (&info_tree, &data_tree)
            .transaction(|(i, d)| {
                i.insert(&key, info_bytes.as_slice())?;
                d.insert(&key, data.as_slice())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(source) => BackupError::Sled {
                    op: "write a generation",
                    source,
                },
                sled::transaction::TransactionError::Abort(()) => BackupError::Encode {
                    account: account.to_owned(),
                    reason: "transaction aborted".into(),
                },
            })?;
        let pruned = self.prune(account, keep)?;
        if snapshot.jid().is_some() {
            self.set_cleared(account, false)?;
        }
        self.flush()?;
        Ok(Stored {
            info,
            created: true,
            pruned,
        })
    }

    /// The data of generation `info` is there and matches its checksum.
    fn intact(&self, account: &str, info: &SnapshotInfo, data_tree: &sled::Tree) -> bool {
        let Ok(Some(data)) = data_tree.get(info.id.to_be_bytes()) else {
            return false;
        };
        seal::unseal(
            self.sealer.as_deref(),
            &data,
            &Self::context(account, info.id),
        )
        .is_ok_and(|bytes| checksum(&bytes) == info.checksum)
    }

    /// Removes all but the newest `keep` generations; returns how many went.
    pub fn prune(&self, account: &str, keep: usize) -> Result<usize, BackupError> {
        let (info_tree, data_tree) = self.trees(account)?;
        let ids: Vec<u64> = info_tree
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 8]>::try_from(k.as_ref()).ok().map(u64::from_be_bytes))
            .collect();
        let doomed = generations_to_prune(&ids, keep);
        for id in &doomed {
            let key = id.to_be_bytes();
            data_tree.remove(key).map_err(sled_err("delete"))?;
            info_tree.remove(key).map_err(sled_err("delete"))?;
        }
        Ok(doomed.len())
    }

    /// Every generation of `account`, newest first. A generation whose info
    /// record is damaged is listed with what is known (its id).
    pub fn list(&self, account: &str) -> Result<Vec<SnapshotInfo>, BackupError> {
        let (info_tree, _) = self.trees(account)?;
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
        Ok(out)
    }

    /// Loads generation `id` and checks it whole: unsealed, checksum equal,
    /// every record decodes (with `verify`, which knows the live key).
    pub fn load(
        &self,
        account: &str,
        id: u64,
        verify: &dyn Fn(&AccountSnapshot) -> Result<(), String>,
    ) -> Result<(SnapshotInfo, AccountSnapshot), BackupError> {
        let damaged = |reason: String| BackupError::Damaged {
            account: account.to_owned(),
            id,
            reason,
        };
        let (info_tree, data_tree) = self.trees(account)?;
        let key = id.to_be_bytes();
        let info = info_tree.get(key).map_err(sled_err("read"))?;
        let data = data_tree.get(key).map_err(sled_err("read"))?;
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
        verify: &dyn Fn(&AccountSnapshot) -> Result<(), String>,
    ) -> Result<(SnapshotInfo, AccountSnapshot, Vec<String>), BackupError> {
        let mut skipped = Vec::new();
        for info in self.list(account)? {
            match self.load(account, info.id, verify) {
                Ok((info, snapshot)) => return Ok((info, snapshot, skipped)),
                Err(e) => skipped.push(e.to_string()),
            }
        }
        Err(BackupError::NoneUsable {
            account: account.to_owned(),
            tried: skipped,
        })
    }

    /// Deletes every generation of `account`.
    pub fn purge(&self, account: &str) -> Result<usize, BackupError> {
        let removed = self.prune(account, usize::MAX)?;
        let (info_tree, data_tree) = self.trees(account)?;
        let left = info_tree.len();
        info_tree.clear().map_err(sled_err("clear"))?;
        data_tree.clear().map_err(sled_err("clear"))?;
        self.set_cleared(account, false)?;
        self.flush()?;
        Ok(removed + left)
    }

    /// Marks `account` as cleared on purpose (or not any more): its
    /// generations are then never restored without being asked to.
    pub fn set_cleared(&self, account: &str, cleared: bool) -> Result<(), BackupError> {
        let tree = self
            .db
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
        self.db
            .open_tree(CLEARED_TREE)
            .and_then(|t| t.contains_key(account))
            .unwrap_or(false)
    }

    #[cfg(test)]
    pub(crate) fn raw_tree(&self, name: &str) -> sled::Tree {
        self.db.open_tree(name).expect("open a backup tree")
    }

    pub fn flush(&self) -> Result<(), BackupError> {
        self.db.flush().map(drop).map_err(sled_err("flush to disk"))
    }
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
