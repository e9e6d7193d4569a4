//! The daemon's answers to the backup methods: `backup`, `backups`,
//! `restore`, `export`, `import` and `clear_session`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::accounts::Accounts;
use crate::account::AccountHandle;
use crate::account::snapshots::Snapshots;
use crate::ipc::protocol::{
    self as wire, ActionResult, BackupResult, BackupsResult, ExportResult, ImportParams,
    ImportResult, MAX_IMPORT_BYTES, Reply, RestoreResult, RpcError, SnapshotEntry, to_result,
};
use crate::store::{AccountSnapshot, SnapshotInfo};

/// An import whose parts are still arriving.
struct Upload {
    transfer: String,
    next: u32,
    bytes: Vec<u8>,
}

/// Imports in progress, at most one per account (a new one replaces it).
#[derive(Default)]
pub struct Uploads(Mutex<HashMap<String, Upload>>);

fn entry(info: &SnapshotInfo) -> SnapshotEntry {
    SnapshotEntry {
        id: info.id,
        created_at: (info.created_at_ms.max(0) / 1000) as u64,
        jid: info.jid.clone(),
        size_bytes: info.size_bytes,
        schema_version: info.schema_version,
        checksum: info.checksum_hex(),
        sealed: info.sealed_with.is_some(),
        reason: info.reason.clone(),
    }
}

async fn custody(
    accounts: &Accounts,
    name: &str,
) -> Result<(Arc<AccountHandle>, Arc<Snapshots>), RpcError> {
    let handle = accounts.get(name).await;
    match (handle, accounts.snapshots(name)) {
        (Some(handle), Some(snapshots)) => Ok((handle, snapshots)),
        _ => {
            let names = accounts.names().await;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            Err(RpcError::unknown_account(name, &names))
        }
    }
}

pub async fn backup(accounts: &Accounts, name: &str) -> Result<Reply, RpcError> {
    let (handle, snapshots) = custody(accounts, name).await?;
    match snapshots.take("manual").await.map_err(RpcError::storage)? {
        Some(stored) => to_result(&BackupResult {
            account: name.to_owned(),
            created: stored.created,
            snapshot: entry(&stored.info),
        }),
        None => Err(RpcError::invalid_state(
            name,
            handle.snapshot().state,
            format!("it has no credentials to back up; link it first with `walink qr {name}`"),
        )),
    }
}

pub async fn list(accounts: &Accounts, name: &str) -> Result<Reply, RpcError> {
    let (_, snapshots) = custody(accounts, name).await?;
    let list = snapshots.backups().list(name).map_err(RpcError::storage)?;
    to_result(&BackupsResult {
        account: name.to_owned(),
        snapshots: list.iter().map(entry).collect(),
    })
}

pub async fn restore(accounts: &Accounts, p: wire::RestoreParams) -> Result<Reply, RpcError> {
    let (_, snapshots) = custody(accounts, &p.account).await?;
    let (info, state, skipped) = snapshots
        .restore(p.snapshot)
        .await
        .map_err(|e| RpcError::storage(e.to_string()))?;
    to_result(&RestoreResult {
        account: p.account,
        snapshot: entry(&info),
        state,
        skipped,
    })
}

/// `clear_session`: keeps the newest generation (taken now, if the account
/// is linked) unless `purge`, and marks it as not to be restored unasked.
pub async fn clear_session(
    accounts: &Accounts,
    p: wire::ClearSessionParams,
) -> Result<Reply, RpcError> {
    let (handle, snapshots) = custody(accounts, &p.account).await?;
    let backups = snapshots.backups();
    if !p.purge {
        snapshots
            .take("before_clear")
            .await
            .map_err(RpcError::storage)?;
        backups.prune(&p.account, 1).map_err(RpcError::storage)?;
        backups
            .set_cleared(&p.account, true)
            .map_err(RpcError::storage)?;
    }
    let state = handle
        .clear_session()
        .await
        .map_err(|e| super::errors::command_error(&p.account, e))?;
    if p.purge {
        backups.purge(&p.account).map_err(RpcError::storage)?;
        handle.update_custody(|c| c.last_backup_at = None);
    }
    to_result(&ActionResult {
        account: p.account,
        state,
    })
}

pub async fn export(accounts: &Accounts, name: &str) -> Result<Reply, RpcError> {
    let (handle, _) = custody(accounts, name).await?;
    let backend = accounts.backend(name).map_err(RpcError::storage)?;
    if !backend.has_credentials() {
        return Err(RpcError::invalid_state(
            name,
            handle.snapshot().state,
            "it has no credentials to export; link it first",
        ));
    }
    let pending = handle
        .messages()
        .pending_texts()
        .await
        .map_err(RpcError::storage)?;
    let bytes = tokio::task::spawn_blocking(move || {
        let snapshot = backend.snapshot()?.with_pending_sends(&pending, None)?;
        snapshot.resealed(backend.sealer(), None)?.to_bytes()
    })
    .await
    .map_err(RpcError::internal)?
    .map_err(RpcError::storage)?;
    tracing::info!(account = %name, event = "exported", "account state exported");
    to_result(&ExportResult {
        account: name.to_owned(),
        jid: handle.snapshot().jid,
        data: STANDARD.encode(bytes),
    })
}

pub async fn import(
    accounts: &Accounts,
    uploads: &Uploads,
    p: ImportParams,
) -> Result<Reply, RpcError> {
    let (_, snapshots) = custody(accounts, &p.account).await?;
    let chunk = STANDARD
        .decode(p.data.as_bytes())
        .map_err(|e| RpcError::invalid_params(format!("data is not base64: {e}")))?;
    let complete = {
        let mut uploads = uploads.0.lock().unwrap_or_else(PoisonError::into_inner);
        if p.part == 0 {
            uploads.insert(
                p.account.clone(),
                Upload {
                    transfer: p.transfer.clone(),
                    next: 0,
                    bytes: Vec::new(),
                },
            );
        }
        let upload = uploads
            .get_mut(&p.account)
            .filter(|u| u.transfer == p.transfer && u.next == p.part)
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "import part {} of transfer {:?} was not expected; start again with part 0",
                    p.part, p.transfer
                ))
            })?;
        if upload.bytes.len() + chunk.len() > MAX_IMPORT_BYTES {
            uploads.remove(&p.account);
            return Err(RpcError::invalid_params(format!(
                "the import is larger than {MAX_IMPORT_BYTES} bytes"
            )));
        }
        upload.bytes.extend_from_slice(&chunk);
        upload.next += 1;
        if upload.next < p.parts {
            None
        } else {
            uploads.remove(&p.account).map(|u| u.bytes)
        }
    };
    let Some(bytes) = complete else {
        return to_result(&ImportResult {
            account: p.account,
            received: p.part + 1,
            parts: p.parts,
            state: None,
        });
    };
    let snapshot = AccountSnapshot::from_bytes(&bytes)
        .map_err(|e| RpcError::invalid_params(format!("the imported state is unreadable: {e}")))?;
    let state = snapshots
        .import(snapshot)
        .await
        .map_err(|e| RpcError::storage(e.to_string()))?;
    tracing::info!(account = %p.account, event = "imported", "account state imported");
    to_result(&ImportResult {
        account: p.account,
        received: p.parts,
        parts: p.parts,
        state: Some(state),
    })
}
