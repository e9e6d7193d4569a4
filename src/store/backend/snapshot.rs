//! Whole-account copies: the building block for backups, restore and moving
//! an account to another host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::verify::VerifyReport;
use super::{Kind, LEGACY_PER_MESSAGE_TREES, SledBackend, meta};
use crate::store::codec::{self, Record};
use crate::store::records::{DeviceList, DeviceState};
use crate::store::seal::{self, Sealer};
use crate::store::{OutboxRecord, StoreError};

/// `(key, value)` rows of one tree, in key order.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// The snapshot's pseudo-tree of the sends that were pending when it was
/// taken (message id → outbox record, sealed like the rest): they live in
/// `messages.db`, not in sled, but a restore must never lose one. Nothing
/// else of the message database is in a backup.
const PENDING_SENDS: &str = "messages:pending_sends";

/// A consistent copy of every record of one account, values still in their
/// versioned encoding. Equal account states give equal snapshots (and equal
/// [`AccountSnapshot::to_bytes`]), so unchanged state can be deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    account: String,
    /// Tree kind name → its `(key, value)` rows in key order.
    trees: BTreeMap<String, Rows>,
}

impl Record for AccountSnapshot {
    const NAME: &'static str = "account snapshot";
    const VERSION: u8 = 1;
}

impl AccountSnapshot {
    /// The account the snapshot was taken from.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The paired phone-number JID recorded in the snapshot, if any.
    pub fn jid(&self) -> Option<String> {
        self.jid_with(None)
    }

    /// [`Self::jid`] of a snapshot whose records may be sealed with `sealer`.
    pub fn jid_with(&self, sealer: Option<&Sealer>) -> Option<String> {
        let device = self.rows(Kind::Meta).find(|(k, _)| *k == meta::DEVICE)?.1;
        let plain = seal::unseal(sealer, device, Kind::Meta.name().as_bytes()).ok()?;
        let state: DeviceState = codec::decode(&plain).ok()?;
        state.pn?.render()
    }

    /// The same records, unsealed with `from` and sealed with `to`: moves a
    /// snapshot between hosts and keys (an export carries no seal).
    pub fn resealed(&self, from: Option<&Sealer>, to: Option<&Sealer>) -> Result<Self, StoreError> {
        let mut trees = BTreeMap::new();
        for (name, rows) in &self.trees {
            let mut out = Vec::with_capacity(rows.len());
            for (key, value) in rows {
                let plain = seal::unseal(from, value, name.as_bytes()).map_err(|source| {
                    StoreError::Sealed {
                        account: self.account.clone(),
                        tree: "snapshot",
                        key: crate::store::error::describe_key(key),
                        source,
                    }
                })?;
                let value = match to {
                    Some(sealer) => sealer.seal(&plain, name.as_bytes()),
                    None => plain.into_owned(),
                };
                out.push((key.clone(), value));
            }
            trees.insert(name.clone(), out);
        }
        Ok(Self {
            account: self.account.clone(),
            trees,
        })
    }

    /// Bytes of keys and values in the snapshot.
    pub fn size_bytes(&self) -> u64 {
        self.records()
            .map(|(_, k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    /// Decodes every record of the snapshot; a snapshot is safe to restore
    /// when the report is valid and names an unknown tree nowhere. The
    /// per-message trees of generations from before they moved to
    /// `messages.db` are neither checked nor restored.
    pub fn verify(&self) -> VerifyReport {
        self.verify_with(None)
    }

    /// [`Self::verify`] of a snapshot whose records may be sealed with `sealer`.
    pub fn verify_with(&self, sealer: Option<&Sealer>) -> VerifyReport {
        let mut report = VerifyReport::default();
        for kind in Kind::ALL {
            for (key, value) in self.rows(kind) {
                report.check(kind, key, value, sealer);
            }
        }
        if let Err(e) = self.pending_sends(sealer) {
            report.problem_count += 1;
            report.problems.push(e.to_string());
        }
        for name in self.unknown_trees() {
            report.problem_count += 1;
            report.problems.push(format!(
                "unknown tree {name:?} (written by a newer walink?)"
            ));
        }
        report
    }

    /// Whether this is the state `other` holds, for a backup that need not
    /// be stored again. What every connect rewrites without changing what a
    /// restore gives back does not count: the login counter whatsapp-rust
    /// reports to the server (other clients never send one at all), when
    /// the WhatsApp Web version was last looked up, when the account's own
    /// device list was last fetched (a restore that sets these back makes
    /// the library look again sooner, nothing more), and the fresh nonce of
    /// a record sealed again with the same content. Without this every
    /// reconnect stored, pruned and fsynced a generation of its own.
    pub fn same_state_as(&self, other: &Self, sealer: Option<&Sealer>) -> bool {
        let count = |s: &Self| s.trees.values().map(Vec::len).sum::<usize>();
        self.account == other.account
            && count(self) == count(other)
            && self
                .records()
                .zip(other.records())
                .all(|((tree, key, a), (tree_b, key_b, b))| {
                    tree == tree_b
                        && key == key_b
                        && (a == b || same_record(tree, key, a, b, sealer))
                })
    }

    /// Every record, tree by tree in name order, each tree's in key order.
    fn records(&self) -> impl Iterator<Item = (&str, &[u8], &[u8])> {
        self.trees.iter().flat_map(|(name, rows)| {
            rows.iter()
                .map(move |(k, v)| (name.as_str(), k.as_slice(), v.as_slice()))
        })
    }

    /// Serializes the snapshot (versioned envelope, like every stored value).
    pub fn to_bytes(&self) -> Result<Vec<u8>, StoreError> {
        codec::encode(self).map_err(|source| StoreError::Encode {
            account: self.account.clone(),
            tree: "snapshot",
            source,
        })
    }

    /// Reads bytes written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        codec::decode(bytes).map_err(|source| StoreError::Decode {
            account: String::new(),
            tree: "snapshot",
            key: "(whole snapshot)".into(),
            source,
        })
    }

    /// The same snapshot with `rows` under tree `name`, as a generation
    /// written by an older walinkd carries trees this one no longer has.
    #[cfg(test)]
    pub(crate) fn with_tree(mut self, name: &str, rows: Rows) -> Self {
        self.trees.insert(name.to_owned(), rows);
        self
    }

    #[cfg(test)]
    pub(crate) fn tree_names(&self) -> Vec<&str> {
        self.trees.keys().map(String::as_str).collect()
    }

    pub(crate) fn rows(&self, kind: Kind) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.trees
            .get(kind.name())
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    fn unknown_trees(&self) -> impl Iterator<Item = &String> {
        self.trees.keys().filter(|name| {
            name.as_str() != PENDING_SENDS
                && !LEGACY_PER_MESSAGE_TREES.contains(&name.as_str())
                && !Kind::ALL.iter().any(|k| k.name() == name.as_str())
        })
    }

    /// The same snapshot carrying `pending`, the account's sends not yet
    /// acknowledged (sealed with `sealer` when there is one).
    pub fn with_pending_sends(
        mut self,
        pending: &[OutboxRecord],
        sealer: Option<&Sealer>,
    ) -> Result<Self, StoreError> {
        let mut rows = Vec::with_capacity(pending.len());
        for record in pending {
            let plain = codec::encode(record).map_err(|source| StoreError::Encode {
                account: self.account.clone(),
                tree: PENDING_SENDS,
                source,
            })?;
            let value = match sealer {
                Some(sealer) => sealer.seal(&plain, PENDING_SENDS.as_bytes()),
                None => plain,
            };
            rows.push((record.id.as_bytes().to_vec(), value));
        }
        rows.sort();
        self.trees.remove(PENDING_SENDS);
        if !rows.is_empty() {
            self.trees.insert(PENDING_SENDS.to_owned(), rows);
        }
        Ok(self)
    }

    /// The sends that were pending when the snapshot was taken, oldest
    /// first.
    pub fn pending_sends(&self, sealer: Option<&Sealer>) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut out = Vec::new();
        for (key, value) in self.trees.get(PENDING_SENDS).into_iter().flatten() {
            let describe = || crate::store::error::describe_key(key);
            let plain =
                seal::unseal(sealer, value, PENDING_SENDS.as_bytes()).map_err(|source| {
                    StoreError::Sealed {
                        account: self.account.clone(),
                        tree: PENDING_SENDS,
                        key: describe(),
                        source,
                    }
                })?;
            let record: OutboxRecord =
                codec::decode(&plain).map_err(|source| StoreError::Decode {
                    account: self.account.clone(),
                    tree: PENDING_SENDS,
                    key: describe(),
                    source,
                })?;
            out.push(record);
        }
        out.sort_by_key(|r| (r.created_at, r.seq));
        Ok(out)
    }
}

impl SledBackend {
    /// Copies every record of this account's session (what the library
    /// keeps per message is in `messages.db`, not in the copy). Writers
    /// are held off for the duration, so the copy never contains half of a
    /// multi-row write.
    pub fn snapshot(&self) -> Result<AccountSnapshot, StoreError> {
        let _gate = self.exclusive();
        let mut trees = BTreeMap::new();
        for kind in Kind::ALL {
            let rows = self
                .rows(kind, &[])
                .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<Rows, _>>()?;
            if !rows.is_empty() {
                trees.insert(kind.name().to_owned(), rows);
            }
        }
        Ok(AccountSnapshot {
            account: self.account.clone(),
            trees,
        })
    }

    /// Replaces this account's session with `snapshot`, in one
    /// transaction, then flushes; the records the library keeps per message
    /// (in `messages.db`) stay as they are, and those an older generation
    /// carries are ignored. The snapshot is verified first; a damaged one is
    /// refused and nothing is changed.
    pub fn restore(&self, snapshot: &AccountSnapshot) -> Result<(), StoreError> {
        let report = snapshot.verify_with(self.sealer());
        if !report.is_valid() {
            return Err(StoreError::Invalid {
                account: self.account.clone(),
                tree: "snapshot",
                key: format!("(snapshot of {:?})", snapshot.account),
                reason: format!(
                    "{} damaged records, first: {}",
                    report.problem_count,
                    report.problems.first().map_or("?", String::as_str)
                ),
            });
        }
        let _gate = self.exclusive();
        let mut existing = Vec::with_capacity(Kind::ALL.len());
        for kind in Kind::ALL {
            existing.push(self.scan_keys(kind, &[])?);
        }
        let result = self.trees.as_slice().transaction(|trees| {
            for (i, kind) in Kind::ALL.iter().enumerate() {
                let tree = self.in_tx(&trees[i]);
                for key in &existing[i] {
                    tree.remove(key)?;
                }
                for (key, value) in snapshot.rows(*kind) {
                    tree.insert(key, value)?;
                }
            }
            Ok(())
        });
        self.tx_result(Kind::Meta, result)?;
        self.flush()
    }
}

/// [`AccountSnapshot::same_state_as`] for one record whose bytes differ.
fn same_record(tree: &str, key: &[u8], a: &[u8], b: &[u8], sealer: Option<&Sealer>) -> bool {
    let context = tree.as_bytes();
    let (Ok(a), Ok(b)) = (
        seal::unseal(sealer, a, context),
        seal::unseal(sealer, b, context),
    ) else {
        return false;
    };
    if a == b {
        return true;
    }
    if tree == Kind::Meta.name() && key == meta::DEVICE {
        return same_when(&a, &b, |d: &mut DeviceState| {
            d.login_counter = 0;
            d.app_version_last_fetched_ms = 0;
        });
    }
    tree == Kind::DeviceLists.name() && same_when(&a, &b, |d: &mut DeviceList| d.timestamp = 0)
}

/// Both decode as `R` and are equal once `forget` cleared what may differ.
fn same_when<R: Record + PartialEq>(a: &[u8], b: &[u8], forget: impl Fn(&mut R)) -> bool {
    match (codec::decode::<R>(a), codec::decode::<R>(b)) {
        (Ok(mut a), Ok(mut b)) => {
            forget(&mut a);
            forget(&mut b);
            a == b
        }
        _ => false,
    }
}
