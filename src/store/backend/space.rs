//! One account's share of the state database: the trees are per kind,
//! shared by every account, and an account's keys start with its prefix.
//!
//! sled keeps the root of every tree in one meta page and copies that
//! page whole each time a tree is created (`cas_root_in_meta`). With a
//! tree per account and kind (`acct:<account>:<kind>`, walinkd until this
//! layout), creating the thousandth account's 17 trees took 70 ms, and
//! the cost grew with every account: 5,000 accounts would have copied a
//! meta page of some 80,000 roots as many times. With the kinds shared, the
//! number of trees no longer depends on the number of accounts.
//!
//! Every key the backend's callers see is relative to the account: the
//! helpers here add the prefix on the way in and strip it on the way out,
//! so no caller can read or write another account's records.

use sled::IVec;
use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use super::{Kind, SledBackend};
use crate::store::error::StoreError;
use crate::store::keys;

/// The registry of account names: one empty row per account ever opened,
/// so listing them needs no scan of the records.
pub(crate) const ACCOUNTS_TREE: &str = "accounts";

/// The shared tree of `kind`.
pub(crate) fn tree_name(kind: Kind) -> String {
    format!("state:{}", kind.name())
}

/// The prefix of every key of `account`: its name length-prefixed, so no
/// account's prefix is the start of another's (`a` and `ab`).
pub(crate) fn prefix(account: &str) -> Vec<u8> {
    keys::composite(&[account.as_bytes()])
}

/// A `sled::Batch` of one account's keys.
pub(crate) struct Batch<'a> {
    prefix: &'a [u8],
    inner: sled::Batch,
}

impl Batch<'_> {
    pub(crate) fn insert(&mut self, key: impl AsRef<[u8]>, value: impl Into<IVec>) {
        self.inner.insert(join(self.prefix, key.as_ref()), value);
    }

    pub(crate) fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.inner.remove(join(self.prefix, key.as_ref()));
    }
}

/// One account's view of a tree inside a sled transaction.
pub(crate) struct Tx<'a> {
    tree: &'a TransactionalTree,
    prefix: &'a [u8],
}

type TxOp<T> = Result<T, UnabortableTransactionError>;

impl Tx<'_> {
    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> TxOp<Option<IVec>> {
        self.tree.get(join(self.prefix, key.as_ref()))
    }

    pub(crate) fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> TxOp<()> {
        self.tree
            .insert(join(self.prefix, key.as_ref()), value)
            .map(drop)
    }

    pub(crate) fn remove(&self, key: impl AsRef<[u8]>) -> TxOp<()> {
        self.tree.remove(join(self.prefix, key.as_ref())).map(drop)
    }
}

fn join(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + key.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(key);
    out
}

impl SledBackend {
    /// `key` of this account as stored.
    pub(crate) fn key(&self, key: &[u8]) -> Vec<u8> {
        join(&self.prefix, key)
    }

    pub(crate) fn batch(&self) -> Batch<'_> {
        Batch {
            prefix: &self.prefix,
            inner: sled::Batch::default(),
        }
    }

    /// This account's view of `tree`, a tree of a running transaction.
    pub(crate) fn in_tx<'a>(&'a self, tree: &'a TransactionalTree) -> Tx<'a> {
        Tx {
            tree,
            prefix: &self.prefix,
        }
    }

    /// This account's rows of `kind` whose (relative) key starts with
    /// `start`, in key order, keys relative.
    pub(crate) fn rows(
        &self,
        kind: Kind,
        start: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<(IVec, IVec), StoreError>> + '_ {
        let skip = self.prefix.len();
        self.tree(kind)
            .scan_prefix(self.key(start))
            .map(move |item| {
                item.map(|(key, value)| (key.subslice(skip, key.len() - skip), value))
                    .map_err(self.sled_err(kind, "read"))
            })
    }

    pub(crate) fn apply(&self, kind: Kind, batch: Batch<'_>) -> Result<(), StoreError> {
        let _gate = self.writing();
        self.apply_held(kind, batch)
    }

    /// [`Self::apply`] for a caller that holds [`Self::exclusive`].
    pub(crate) fn apply_held(&self, kind: Kind, batch: Batch<'_>) -> Result<(), StoreError> {
        self.tree(kind)
            .apply_batch(batch.inner)
            .map_err(self.sled_err(kind, "write a batch"))
    }

    /// Whether this account has a row of `kind` under `key`.
    pub(crate) fn contains(&self, kind: Kind, key: &[u8]) -> Result<bool, StoreError> {
        self.tree(kind)
            .contains_key(self.key(key))
            .map_err(self.sled_err(kind, "read"))
    }

    /// Writes `value` as it is (no encoding, no seal), for tests that
    /// store what damage or an older walinkd leaves.
    #[cfg(test)]
    pub(crate) fn put_raw(&self, kind: Kind, key: &[u8], value: Vec<u8>) {
        self.tree(kind).insert(self.key(key), value).unwrap();
    }

    /// Resolves when a row of `kind` under a key starting with `start`
    /// changes.
    pub(crate) fn watch(&self, kind: Kind, start: &[u8]) -> sled::Subscriber {
        self.tree(kind).watch_prefix(self.key(start))
    }
}

/// Moves every account's records out of the trees walinkd kept per account
/// and kind (`acct:<account>:<kind>`) into the shared ones, then drops the
/// old trees. Each old tree is copied, flushed and only then dropped, so a
/// crash in the middle leaves every record in one place or in both (and
/// the next open copies it again, the same bytes); values move as stored,
/// sealed or not. Returns the accounts moved.
pub(crate) fn adopt_per_account_trees(db: &sled::Db) -> Result<Vec<String>, StoreError> {
    let database = |op| move |source| StoreError::Database { op, source };
    let registry = db
        .open_tree(ACCOUNTS_TREE)
        .map_err(database("open the account registry"))?;
    let mut moved = Vec::new();
    for raw in db.tree_names() {
        let Some((account, kind)) = std::str::from_utf8(&raw)
            .ok()
            .and_then(|name| name.strip_prefix("acct:"))
            .and_then(|rest| rest.rsplit_once(':'))
            .and_then(|(account, kind)| {
                Kind::ALL
                    .into_iter()
                    .find(|k| k.name() == kind)
                    .map(|k| (account.to_owned(), k))
            })
        else {
            continue;
        };
        let old = db
            .open_tree(&raw)
            .map_err(database("open a tree of the old layout"))?;
        let shared = db
            .open_tree(tree_name(kind))
            .map_err(database("open a shared tree"))?;
        let prefix = prefix(&account);
        let mut batch = sled::Batch::default();
        for item in old.iter() {
            let (key, value) = item.map_err(database("read a tree of the old layout"))?;
            batch.insert(join(&prefix, &key), value);
        }
        shared
            .apply_batch(batch)
            .map_err(database("copy a tree of the old layout"))?;
        registry
            .insert(account.as_bytes(), &[][..])
            .map_err(database("register an account"))?;
        db.flush().map_err(database("flush to disk"))?;
        db.drop_tree(&raw)
            .map_err(database("drop a tree of the old layout"))?;
        if !moved.contains(&account) {
            moved.push(account);
        }
    }
    Ok(moved)
}
