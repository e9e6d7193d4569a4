//! `SledBackend`: one account's whatsapp-rust `Backend` on sled trees.
//!
//! Each kind of record has one tree, `state:<kind>`, shared by every
//! account; an account's keys start with its prefix (see `space.rs`), so
//! its data can be listed, wiped, snapshotted or moved without touching
//! another account's.

mod app_sync;
mod device;
mod msg_secret;
mod protocol;
mod signal;
mod snapshot;
pub(crate) mod space;
mod verify;

pub use snapshot::AccountSnapshot;
pub(crate) use space::{ACCOUNTS_TREE, adopt_per_account_trees};
pub use verify::VerifyReport;

use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use wacore::store::Device;

use super::codec::{self, Record};
use super::error::{StoreError, describe_key};
use super::messages::MessageStore;
use super::records::{DeviceState, WebVersion};
use super::seal::{self, Sealer};

/// The trees one account owns, in the order `clear` wipes them: the device
/// record first, so an interrupted wipe never leaves credentials behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Meta,
    Identities,
    Sessions,
    PreKeys,
    SignedPreKeys,
    SenderKeys,
    SyncKeys,
    AppStateVersions,
    MutationMacs,
    SenderKeyDevices,
    LidMappings,
    PnToLid,
    BaseKeys,
    DeviceLists,
    GroupMetadata,
    TcTokens,
}

impl Kind {
    pub(crate) const ALL: [Kind; 16] = [
        Kind::Meta,
        Kind::Identities,
        Kind::Sessions,
        Kind::PreKeys,
        Kind::SignedPreKeys,
        Kind::SenderKeys,
        Kind::SyncKeys,
        Kind::AppStateVersions,
        Kind::MutationMacs,
        Kind::SenderKeyDevices,
        Kind::LidMappings,
        Kind::PnToLid,
        Kind::BaseKeys,
        Kind::DeviceLists,
        Kind::GroupMetadata,
        Kind::TcTokens,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Meta => "meta",
            Kind::Identities => "identities",
            Kind::Sessions => "sessions",
            Kind::PreKeys => "prekeys",
            Kind::SignedPreKeys => "signed_prekeys",
            Kind::SenderKeys => "sender_keys",
            Kind::SyncKeys => "sync_keys",
            Kind::AppStateVersions => "app_state_versions",
            Kind::MutationMacs => "mutation_macs",
            Kind::SenderKeyDevices => "sender_key_devices",
            Kind::LidMappings => "lid_mappings",
            Kind::PnToLid => "pn_to_lid",
            Kind::BaseKeys => "base_keys",
            Kind::DeviceLists => "device_lists",
            Kind::GroupMetadata => "group_metadata",
            Kind::TcTokens => "tc_tokens",
        }
    }
}

/// Keys of the singleton rows in the `meta` tree.
pub(crate) mod meta {
    pub const DEVICE: &[u8] = b"device";
    pub const DEVICE_ID_SEQ: &[u8] = b"device_id_seq";
    pub const LATEST_SYNC_KEY_ID: &[u8] = b"latest_sync_key_id";
    /// Not under `device`: `watch_credentials` watches that prefix.
    pub const WEB_VERSION: &[u8] = b"web_version";
}

/// Result type of sled transaction closures in this module.
pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// Tree kinds where walinkd kept the records whatsapp-rust keeps per
/// message (its copy of each send, message secrets, their time indexes,
/// received messages it buffers until walink's inbox holds them) before
/// they moved to `messages.db` (`messages/library.rs`): they grow with
/// traffic, and after three minutes of chaos they were 1.7 MB of an
/// account's 1.9 MB in sled, whose recovery at every open costs memory
/// about the size of its file. No release carried them, so they are
/// dropped at open, not moved: a send's copy or a message secret kept
/// before the upgrade is lost (the outbox answers retry receipts for its
/// sends), and so is a received message still buffered then (one whose
/// inbox commit a crash or a failure had stopped: the library now acks
/// its redelivery as a duplicate). Backup generations taken before it
/// may still carry them: a restore ignores them.
pub(crate) const LEGACY_PER_MESSAGE_TREES: [&str; 5] = [
    "sent_messages",
    "sent_by_time",
    "msg_secrets",
    "msg_secret_expiry",
    "pending_inbound",
];

/// Where the message a retry receipt asks for comes from when the library's
/// own copy (`sent_copies` in `messages.db`) is gone: a crash before it
/// was committed (it is written without an fsync of its own), evicted by
/// the cap, or kept in sled by a walinkd from before the move. walink's
/// outbox commits every accepted message before it is sent, so it still
/// has it.
#[async_trait::async_trait]
pub trait ResendSource: Send + Sync {
    /// The encoded message `message_id` sent to `chat_jid`, if it is ours.
    async fn payload(&self, chat_jid: &str, message_id: &str) -> Option<Vec<u8>>;
}

/// The whatsapp-rust storage backend of one account.
///
/// Obtain it from [`super::StateDb::account`]; there is one instance per
/// account name, shared by everything that works on that account.
pub struct SledBackend {
    account: String,
    /// The shared tree of each kind, in [`Kind::ALL`]'s order.
    trees: Vec<sled::Tree>,
    /// What every key of this account starts with.
    prefix: Vec<u8>,
    /// Writers share it; a consistent whole-account view (snapshots) takes it
    /// exclusively. Only held inside synchronous sled calls, never across an
    /// `.await`.
    gate: RwLock<()>,
    /// Encryption at rest: every value written is sealed with it.
    sealer: Option<Arc<Sealer>>,
    /// Answers retry receipts for messages the library's copy lost.
    resends: OnceLock<Arc<dyn ResendSource>>,
    /// Where the records whatsapp-rust keeps per message live.
    library: OnceLock<MessageStore>,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl SledBackend {
    pub(crate) fn open(
        db: &sled::Db,
        account: &str,
        sealer: Option<Arc<Sealer>>,
    ) -> Result<Self, StoreError> {
        let sled_err = |tree, op| {
            move |source| StoreError::Sled {
                account: account.to_owned(),
                tree,
                op,
                source,
            }
        };
        let mut trees = Vec::with_capacity(Kind::ALL.len());
        for kind in Kind::ALL {
            let tree = db
                .open_tree(space::tree_name(kind))
                .map_err(sled_err(kind.name(), "open the tree"))?;
            trees.push(tree);
        }
        let registry = db
            .open_tree(ACCOUNTS_TREE)
            .map_err(sled_err(ACCOUNTS_TREE, "open the tree"))?;
        if !registry
            .contains_key(account)
            .map_err(sled_err(ACCOUNTS_TREE, "read"))?
        {
            registry
                .insert(account, &[][..])
                .map_err(sled_err(ACCOUNTS_TREE, "register the account"))?;
        }
        Ok(Self {
            account: account.to_owned(),
            trees,
            prefix: space::prefix(account),
            gate: RwLock::new(()),
            sealer,
            resends: OnceLock::new(),
            library: OnceLock::new(),
        })
    }

    /// Keeps the records whatsapp-rust asks this backend to keep per
    /// message (its copy of each send, message secrets, received messages
    /// it buffers) in `store`, the
    /// account's message store, rather than in sled. Set once, by the
    /// account that owns this backend, before it connects; until then
    /// those calls fail with [`StoreError::NotAttached`] (the library logs
    /// them) rather than keep anything where it would not be found again.
    pub fn keep_library_records_in(&self, store: MessageStore) {
        let _ = self.library.set(store);
    }

    /// The attached message store. Logged here when missing: the library
    /// logs the error it gets back only as "database operation error".
    pub(crate) fn library(&self, op: &'static str) -> Result<&MessageStore, StoreError> {
        self.library.get().ok_or_else(|| {
            let err = StoreError::NotAttached {
                account: self.account.clone(),
                op,
            };
            tracing::error!(account = %self.account, error = %err, "{err}");
            err
        })
    }

    /// Serves retry receipts from `source` when `sent_messages` has no copy.
    /// Set once, by the account that owns this backend.
    pub fn serve_resends_from(&self, source: Arc<dyn ResendSource>) {
        let _ = self.resends.set(source);
    }

    pub(crate) fn resend_source(&self) -> Option<&Arc<dyn ResendSource>> {
        self.resends.get()
    }

    /// The account name this backend belongs to.
    pub fn account_name(&self) -> &str {
        &self.account
    }

    /// True iff a device record is stored and it is registered (paired): it
    /// carries the phone-number JID that whatsapp-rust logs in with. An
    /// unreadable record counts as no credentials; [`Self::load_device`]
    /// tells the two apart.
    pub fn has_credentials(&self) -> bool {
        matches!(self.load_device(), Ok(Some(device)) if device.is_registered())
    }

    /// The paired phone-number JID (`user:device@s.whatsapp.net`), if any.
    pub fn jid(&self) -> Option<String> {
        self.load_device()
            .ok()
            .flatten()
            .and_then(|device| device.pn.map(|pn| pn.to_string()))
    }

    /// Loads the stored device record; `Ok(None)` when none was ever saved.
    pub fn load_device(&self) -> Result<Option<Device>, StoreError> {
        let Some(state) = self.get::<DeviceState>(Kind::Meta, meta::DEVICE)? else {
            return Ok(None);
        };
        state
            .into_device()
            .map(Some)
            .map_err(|reason| self.invalid(Kind::Meta, meta::DEVICE, reason))
    }

    /// The WhatsApp Web version kept for this account, if any.
    pub fn web_version(&self) -> Result<Option<WebVersion>, StoreError> {
        self.get(Kind::Meta, meta::WEB_VERSION)
    }

    pub fn set_web_version(&self, version: &WebVersion) -> Result<(), StoreError> {
        self.put(Kind::Meta, meta::WEB_VERSION, version)
    }

    /// The key records are sealed with, when encryption at rest is on.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_deref()
    }

    /// Resolves when the device record (credentials, identity) changes.
    pub fn watch_credentials(&self) -> sled::Subscriber {
        self.watch(Kind::Meta, meta::DEVICE)
    }

    /// Wipes every record of this account (credentials first) and flushes,
    /// then the records the library kept per message in `messages.db`.
    /// Other accounts are untouched. Without a message store attached
    /// nothing is wiped: the wipe would leave those records behind.
    pub async fn clear(&self) -> Result<(), StoreError> {
        let library = self.library("clear its session")?;
        {
            let _gate = self.exclusive();
            for kind in Kind::ALL {
                self.apply_held(kind, self.removal(kind, &[])?)?;
            }
            self.flush()?;
        }
        library.clear_library_records().await
    }

    /// Approximate bytes of this account's session (keys plus values,
    /// before sled's own overhead and compression): what a backup
    /// generation holds.
    pub fn size_bytes(&self) -> u64 {
        let mut total = 0u64;
        for kind in Kind::ALL {
            for (key, value) in self.rows(kind, &[]).flatten() {
                total += (key.len() + value.len()) as u64;
            }
        }
        total
    }

    /// Makes every write so far durable on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.tree(Kind::Meta)
            .flush()
            .map(drop)
            .map_err(self.sled_err(Kind::Meta, "flush to disk"))
    }

    /// The shared tree of `kind`: every account's rows. Reached through
    /// the helpers of `space.rs`, which keep to this account's.
    fn tree(&self, kind: Kind) -> &sled::Tree {
        &self.trees[kind as usize]
    }

    /// Taken by every write, so [`Self::exclusive`] sees no half-applied one.
    pub(crate) fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn sled_err(
        &self,
        kind: Kind,
        op: &'static str,
    ) -> impl FnOnce(sled::Error) -> StoreError + '_ {
        move |source| StoreError::Sled {
            account: self.account.clone(),
            tree: kind.name(),
            op,
            source,
        }
    }

    pub(crate) fn invalid(&self, kind: Kind, key: &[u8], reason: String) -> StoreError {
        StoreError::Invalid {
            account: self.account.clone(),
            tree: kind.name(),
            key: describe_key(key),
            reason,
        }
    }

    pub(crate) fn encode<R: Record>(&self, kind: Kind, value: &R) -> Result<Vec<u8>, StoreError> {
        let plain = codec::encode(value).map_err(|source| StoreError::Encode {
            account: self.account.clone(),
            tree: kind.name(),
            source,
        })?;
        Ok(match &self.sealer {
            Some(sealer) => sealer.seal(&plain, kind.name().as_bytes()),
            None => plain,
        })
    }

    pub(crate) fn decode<R: Record>(
        &self,
        kind: Kind,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<R, StoreError> {
        let plain =
            seal::unseal(self.sealer(), bytes, kind.name().as_bytes()).map_err(|source| {
                StoreError::Sealed {
                    account: self.account.clone(),
                    tree: kind.name(),
                    key: describe_key(key),
                    source,
                }
            })?;
        codec::decode(&plain).map_err(|source| StoreError::Decode {
            account: self.account.clone(),
            tree: kind.name(),
            key: describe_key(key),
            source,
        })
    }

    pub(crate) fn get<R: Record>(&self, kind: Kind, key: &[u8]) -> Result<Option<R>, StoreError> {
        let value = self
            .tree(kind)
            .get(self.key(key))
            .map_err(self.sled_err(kind, "read"))?;
        value.map(|v| self.decode(kind, key, &v)).transpose()
    }

    pub(crate) fn put<R: Record>(
        &self,
        kind: Kind,
        key: &[u8],
        value: &R,
    ) -> Result<(), StoreError> {
        let bytes = self.encode(kind, value)?;
        let _gate = self.writing();
        self.tree(kind)
            .insert(self.key(key), bytes)
            .map(drop)
            .map_err(self.sled_err(kind, "write"))
    }

    pub(crate) fn remove(&self, kind: Kind, key: &[u8]) -> Result<(), StoreError> {
        let _gate = self.writing();
        self.tree(kind)
            .remove(self.key(key))
            .map(drop)
            .map_err(self.sled_err(kind, "delete"))
    }

    /// Every `(key, decoded value)` of `kind` whose key starts with `prefix`.
    pub(crate) fn scan<R: Record>(
        &self,
        kind: Kind,
        prefix: &[u8],
    ) -> Result<Vec<(sled::IVec, R)>, StoreError> {
        let mut out = Vec::new();
        for item in self.rows(kind, prefix) {
            let (key, value) = item?;
            let record = self.decode(kind, &key, &value)?;
            out.push((key, record));
        }
        Ok(out)
    }

    /// Keys of `kind` starting with `prefix`, values untouched.
    pub(crate) fn scan_keys(
        &self,
        kind: Kind,
        prefix: &[u8],
    ) -> Result<Vec<sled::IVec>, StoreError> {
        self.rows(kind, prefix)
            .map(|row| row.map(|(key, _)| key))
            .collect()
    }

    /// Removes every key of `kind` starting with `prefix`, atomically.
    pub(crate) fn remove_prefix(&self, kind: Kind, prefix: &[u8]) -> Result<(), StoreError> {
        self.apply(kind, self.removal(kind, prefix)?)
    }

    /// A batch removing every key of `kind` starting with `prefix`.
    fn removal(&self, kind: Kind, prefix: &[u8]) -> Result<space::Batch<'_>, StoreError> {
        let mut batch = self.batch();
        for key in self.scan_keys(kind, prefix)? {
            batch.remove(key);
        }
        Ok(batch)
    }

    /// Maps the result of a sled transaction over trees of `kind`.
    pub(crate) fn tx_result<T>(
        &self,
        kind: Kind,
        result: Result<T, TransactionError<StoreError>>,
    ) -> Result<T, StoreError> {
        result.map_err(|err| match err {
            TransactionError::Abort(err) => err,
            TransactionError::Storage(source) => StoreError::Sled {
                account: self.account.clone(),
                tree: kind.name(),
                op: "commit a transaction",
                source,
            },
        })
    }
}

/// Aborts a sled transaction with a store error.
pub(crate) fn abort<T>(result: Result<T, StoreError>) -> TxResult<T> {
    result.map_err(ConflictableTransactionError::Abort)
}
