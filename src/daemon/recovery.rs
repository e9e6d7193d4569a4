//! Opening the stores at startup: the encryption key is checked first (a
//! wrong key refuses to start and touches nothing), then the live state is
//! opened and every account validated; live state that cannot be opened or
//! read is set aside (never deleted) and the newest usable backup restored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};

use crate::account::snapshots::restorable;
use crate::config::{Config, StorageConfig};
use crate::store::seal::{SealError, Sealer};
use crate::store::{
    BackupDb, BackupError, Fault, MessageDb, SledBackend, StateDb, StoreError, VerifyReport,
    messages_db_path,
};

/// Name of the key file systemd passes with `LoadCredential[Encrypted]=`.
pub const CREDENTIAL_NAME: &str = "walink.key";
/// Proof of which key the state directory is sealed with, checked before
/// any database is opened.
const KEY_CHECK_FILE: &str = "key-check";
const KEY_CHECK_TEXT: &[u8] = b"walink encryption key check";

/// Where the backup database lives inside the state directory.
pub fn backup_db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("backup")
}

/// The encryption key: `storage.key_file`, else the systemd credential
/// `walink.key`, else none (no encryption at rest).
pub fn load_key(storage: &StorageConfig) -> anyhow::Result<Option<Arc<Sealer>>> {
    let path = match &storage.key_file {
        Some(path) => path.clone(),
        None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) if Path::new(&dir).join(CREDENTIAL_NAME).exists() => {
                Path::new(&dir).join(CREDENTIAL_NAME)
            }
            _ => return Ok(None),
        },
    };
    let sealer = Sealer::from_key_file(&path)?;
    tracing::info!(key_id = %sealer.key_id(), "encryption at rest is on (key {})", sealer.key_id());
    Ok(Some(Arc::new(sealer)))
}

/// Refuses a key other than the one the state directory was sealed with,
/// and a missing key for a sealed one, before anything is opened or written.
/// Returns true when the key is new to this state directory (no key check
/// recorded yet): [`record_key`] then records it once the state is known
/// to open with it, and plain records are sealed.
pub fn check_key(state_dir: &Path, sealer: Option<&Sealer>) -> anyhow::Result<bool> {
    let path = state_dir.join(KEY_CHECK_FILE);
    let stored = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(sealer.is_some()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let refuse = |why: SealError| {
        anyhow::anyhow!(
            "refusing to start: the state in {} is encrypted, and {why}; nothing was changed",
            state_dir.display()
        )
    };
    match sealer {
        None => Err(refuse(
            crate::store::seal::unseal(None, &stored, b"")
                .err()
                .unwrap_or(SealError::Damaged),
        )),
        Some(sealer) => match sealer.open(&stored, KEY_CHECK_FILE.as_bytes()) {
            Ok(text) if text == KEY_CHECK_TEXT => Ok(false),
            Ok(_) | Err(SealError::Damaged) | Err(SealError::Truncated(_)) => bail!(
                "refusing to start: the key check file {} is damaged; nothing was changed. \
                 If the configured key (id {}) is the right one, delete that file and start again",
                path.display(),
                sealer.key_id()
            ),
            Err(e) => Err(refuse(e)),
        },
    }
}

/// Records which key the state directory is sealed with.
fn record_key(state_dir: &Path, sealer: &Sealer) -> anyhow::Result<()> {
    let path = state_dir.join(KEY_CHECK_FILE);
    std::fs::write(
        &path,
        sealer.seal(KEY_CHECK_TEXT, KEY_CHECK_FILE.as_bytes()),
    )
    .with_context(|| format!("cannot write {}", path.display()))
}

/// Seals the records an account stored before encryption was turned on.
fn seal_plain_records(backend: &SledBackend) -> anyhow::Result<()> {
    let snapshot = backend.snapshot()?;
    let sealed = snapshot.resealed(backend.sealer(), backend.sealer())?;
    backend.restore(&sealed)?;
    tracing::info!(account = %backend.account_name(), "sealed the account's records with the encryption key");
    Ok(())
}

/// Opens the backup database; one whose data is damaged is set aside and
/// started afresh, so damaged backups never keep the live state offline.
/// Anything else (no permission, a full or failing disk, another walinkd)
/// is not damage: nothing is moved and walinkd does not start.
fn open_backups(path: &Path, sealer: Option<Arc<Sealer>>) -> anyhow::Result<BackupDb> {
    match BackupDb::open(path, sealer.clone()) {
        Ok(db) => Ok(db),
        Err(BackupError::Open { source, .. }) if Fault::of_sled(&source) == Fault::Damaged => {
            let aside = aside_name(path);
            tracing::error!(event = "backups_damaged", error = %source, aside = %aside.display(), "the backup database cannot be opened ({source}); moving it to {} and starting a new one", aside.display());
            std::fs::rename(path, &aside).with_context(|| {
                format!("cannot move the damaged backups {} aside", path.display())
            })?;
            Ok(BackupDb::open(path, sealer)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `<path>.damaged-<unix seconds>`, a name not taken yet.
fn aside_name(path: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("{}.damaged-{secs}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Moves the damaged live state at `live_path` aside (kept, never deleted)
/// for a new one to take its place.
fn move_aside(live_path: &Path, what: &str, error: &StoreError) -> anyhow::Result<()> {
    let aside = aside_name(live_path);
    tracing::error!(event = "state_damaged", error = %error, aside = %aside.display(), "{what} ({error}); moving the live state to {} and restoring from backups", aside.display());
    std::fs::rename(live_path, &aside).with_context(|| {
        format!(
            "cannot move the damaged state {} aside",
            live_path.display()
        )
    })
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Whether `e` failed the start only for lack of disk space: then walinkd
/// waits for space instead of exiting (nothing was moved or changed).
pub fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<StoreError>()
            .is_some_and(|e| e.fault() == Fault::DiskFull)
            || matches!(
                cause.downcast_ref::<BackupError>(),
                Some(BackupError::Open { source, .. }) if Fault::of_sled(source) == Fault::DiskFull
            )
    })
}

/// The stores of one state directory, open.
pub struct Stores {
    pub state: StateDb,
    pub backups: Arc<BackupDb>,
    pub messages: Arc<MessageDb>,
    /// What the start check found in each account it did not have to
    /// restore, and when: that account's first validation, not run twice.
    pub verified: Verified,
}

/// Each account's start check that found its state sound, and when it ran.
pub type Verified = HashMap<String, (VerifyReport, SystemTime)>;

/// Opens the message database; one that opens and fails its integrity
/// check is set aside (with its WAL) and started afresh. Returns whether it
/// was, so the pending sends kept in the backups are put back.
fn open_messages(path: &Path, key: Option<String>) -> anyhow::Result<(Arc<MessageDb>, bool)> {
    match MessageDb::open(path, key.clone()) {
        Ok(db) => Ok((db, false)),
        Err(e) if e.fault() == Fault::Damaged => {
            let aside = aside_name(path);
            tracing::error!(event = "messages_damaged", error = %e, aside = %aside.display(), "{e}; moving it to {} and starting a new one", aside.display());
            for suffix in ["", "-wal", "-shm"] {
                let from = PathBuf::from(format!("{}{suffix}", path.display()));
                let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                match std::fs::rename(&from, &to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot move the damaged {} aside", from.display())
                        });
                    }
                }
            }
            Ok((MessageDb::open(path, key)?, true))
        }
        Err(e) => Err(e).context("refusing to start; nothing was changed"),
    }
}

/// Opens the live state, the backups and the messages, restoring what
/// needs it. Only data that opens and fails its checks is restored; a
/// storage fault (permissions, a full or failing disk) stops here with
/// what to do, and every file stays as it is.
pub async fn open_stores(
    config: &Config,
    live_path: &Path,
    sealer: Option<Arc<Sealer>>,
) -> anyhow::Result<Stores> {
    let state_dir = &config.daemon.state_dir;
    crate::store::access::check_state_dir(state_dir)?;
    let new_key = check_key(state_dir, sealer.as_deref())?;
    // Each step says when it begins: a start that stops answering is then
    // found at its step in the log.
    tracing::debug!(path = %backup_db_path(state_dir).display(), "opening the backup database");
    let backups = Arc::new(open_backups(&backup_db_path(state_dir), sealer.clone())?);
    let messages_path = messages_db_path(state_dir);
    tracing::debug!(path = %messages_path.display(), "opening the message database");
    let database_key = sealer.as_ref().map(|s| s.database_key_hex());
    if let Some(key) = database_key.as_deref().filter(|_| new_key) {
        MessageDb::encrypt_in_place(&messages_path, key)?;
    }
    let (messages, messages_lost) = open_messages(&messages_path, database_key)?;
    let mut copied_aside = false;
    tracing::debug!(path = %live_path.display(), "opening the live state");
    let mut db = match StateDb::open_sealed(live_path, sealer.clone()) {
        Ok(db) => db,
        Err(e) if e.fault() != Fault::Damaged => {
            return Err(e).context("refusing to start; nothing was changed");
        }
        Err(e) => {
            move_aside(live_path, "the live state cannot be opened", &e)?;
            copied_aside = true;
            StateDb::open_sealed(live_path, sealer.clone())?
        }
    };
    let verified =
        match restore_damaged(config, &db, &backups, &messages, live_path, copied_aside).await? {
            Ok(verified) => verified,
            Err(e) => {
                // The damage is in records a restore has to clear, so the live
                // state cannot be mended in place: every account starts from its
                // newest backup in a new one.
                drop(db);
                move_aside(live_path, "restoring in place failed", &e)?;
                db = StateDb::open_sealed(live_path, sealer.clone())?;
                restore_damaged(config, &db, &backups, &messages, live_path, true)
                    .await?
                    .context("cannot restore from backups into a new live state")?
            }
        };
    if let Some(sealer) = sealer.as_deref().filter(|_| new_key) {
        for account in &config.accounts {
            seal_plain_records(&*db.account(&account.name)?)?;
        }
        record_key(state_dir, sealer)?;
    }
    if messages_lost {
        requeue_from_backups(config, &db, &backups, &messages).await?;
    }
    Ok(Stores {
        state: db,
        backups,
        messages,
        verified,
    })
}

/// Restores from its newest usable backup each account whose live state
/// is damaged, copying the live state aside first (unless `copied_aside`),
/// and returns what the check found in the others. The inner error is a
/// restore that hit damage in the records it must clear: the caller starts
/// a new live state instead.
async fn restore_damaged(
    config: &Config,
    db: &StateDb,
    backups: &BackupDb,
    messages: &Arc<MessageDb>,
    live_path: &Path,
    mut copied_aside: bool,
) -> anyhow::Result<Result<Verified, StoreError>> {
    let mut verified = Verified::new();
    for (backend, checked) in check_accounts(config, db, backups)? {
        let why = match checked {
            Ok(report) => {
                let name = backend.account_name().to_owned();
                verified.insert(name, (report, SystemTime::now()));
                continue;
            }
            Err(why) => why,
        };
        let name = backend.account_name();
        let verify = restorable(&backend);
        let (info, snapshot, skipped) = match backups.newest_valid(name, &verify) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(account = %name, event = "restore_failed", error = %e, "account {name}: {why}, and {e}; it starts as it is");
                continue;
            }
        };
        if !copied_aside {
            let _ = db.flush();
            let copy = aside_name(live_path);
            copy_dir(live_path, &copy).with_context(|| {
                format!(
                    "cannot copy the damaged state {} aside",
                    live_path.display()
                )
            })?;
            tracing::warn!(event = "state_damaged", copy = %copy.display(), "kept a copy of the damaged live state in {}", copy.display());
            copied_aside = true;
        }
        for reason in &skipped {
            tracing::warn!(account = %name, reason = %reason, "skipped a backup generation: {reason}");
        }
        match backend.restore(&snapshot) {
            Ok(()) => {}
            Err(e) if e.fault() == Fault::Damaged => return Ok(Err(e)),
            Err(e) => return Err(e.into()),
        }
        requeue(messages, name, snapshot.pending_sends(backend.sealer())?).await?;
        tracing::warn!(
            account = %name,
            event = "restored_from_backup",
            generation = info.id,
            reason = %why,
            "account {name}: {why}; restored backup generation {} (skipped {} newer)",
            info.id,
            skipped.len()
        );
    }
    Ok(Ok(verified))
}

/// An account's store, and what its check found (see [`damage`]).
type Checked = (Arc<SledBackend>, Result<VerifyReport, String>);

/// Each configured account's store and what its check found, on every
/// core: the check reads every record, and one account after the other it
/// was a third of a cold start with 1,000 accounts (8.6 s of 26.7 s).
fn check_accounts(
    config: &Config,
    db: &StateDb,
    backups: &BackupDb,
) -> anyhow::Result<Vec<Checked>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = config.accounts.len().div_ceil(threads).max(1);
    let _open = backups.hold_open()?;
    std::thread::scope(|scope| {
        let workers: Vec<_> = config
            .accounts
            .chunks(chunk)
            .map(|accounts| {
                scope.spawn(move || {
                    accounts
                        .iter()
                        .map(|account| {
                            tracing::debug!(account = %account.name, "checking the account's stored state");
                            let backend = db.account(&account.name)?;
                            let checked = damage(&backend, backups)?;
                            Ok((backend, checked))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(config.accounts.len());
        for worker in workers {
            let checked = worker
                .join()
                .map_err(|_| anyhow::anyhow!("checking the stored accounts panicked"))??;
            all.extend(checked);
        }
        Ok(all)
    })
}

/// Puts the sends a restored generation had pending back in the outbox;
/// the ones the outbox still has (pending or acked since) stay as they are.
async fn requeue(
    messages: &Arc<MessageDb>,
    account: &str,
    pending: Vec<crate::store::OutboxRecord>,
) -> anyhow::Result<()> {
    let added = messages.account(account)?.requeue(pending).await?;
    if added > 0 {
        tracing::warn!(account = %account, event = "requeued_from_backup", count = added, "account {account}: put {added} pending send(s) from the backup back in the outbox");
    }
    Ok(())
}

/// A new message database replaced a damaged one: the sends pending in
/// each account's newest backup go out again, under their ids.
async fn requeue_from_backups(
    config: &Config,
    db: &StateDb,
    backups: &BackupDb,
    messages: &Arc<MessageDb>,
) -> anyhow::Result<()> {
    for account in &config.accounts {
        let backend = db.account(&account.name)?;
        let verify = restorable(&backend);
        match backups.newest_valid(&account.name, &verify) {
            Ok((_, snapshot, _)) => {
                requeue(
                    messages,
                    &account.name,
                    snapshot.pending_sends(backend.sealer())?,
                )
                .await?;
            }
            Err(e) => {
                tracing::warn!(account = %account.name, error = %e, "no backup to take pending sends from: {e}");
            }
        }
    }
    Ok(())
}

/// What `backend`'s check found when it is sound, else why it needs a
/// restore.
fn damage(
    backend: &SledBackend,
    backups: &BackupDb,
) -> anyhow::Result<Result<VerifyReport, String>> {
    let name = backend.account_name();
    let report = match backend.verify() {
        Ok(report) => report,
        Err(e) if e.fault() == Fault::Damaged => {
            return Ok(Err(format!("its state cannot be read: {e}")));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "refusing to start: account {name:?}'s state cannot be read; nothing was changed"
            )));
        }
    };
    if let Some(key) = &report.key_problem {
        bail!(
            "refusing to start: account {name:?} has records that cannot be unsealed: {key}; nothing was changed"
        );
    }
    if !report.is_valid() {
        return Ok(Err(format!(
            "{} record(s) do not decode, first: {}",
            report.problem_count,
            report.problems.first().map_or("?", String::as_str)
        )));
    }
    let has_backups = !backups.list(name)?.is_empty();
    if !report.registered && has_backups && !backups.is_cleared(name) {
        return Ok(Err("its credentials are missing".into()));
    }
    Ok(Ok(report))
}
