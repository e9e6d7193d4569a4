//! One account's custody: snapshots into the backup database (on a
//! schedule, after pairing, after the credentials change, on request) and
//! validation of the stored state, whose findings feed health and status.
//! Runs beside the supervisor, never inside it, so a slow disk delays a
//! backup and not the connection.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::command::CommandError;
use super::events::AccountEvent;
use super::handle::AccountHandle;
use super::state::AccountState;
use crate::store::backup::{BackupDb, NewestCheck, SnapshotInfo, Stored};
use crate::store::{AccountSnapshot, OutboxRecord, SledBackend, VerifyReport};

/// Changes to the credentials come in bursts (pairing writes the device
/// record several times): one snapshot once they settle.
const SETTLE: Duration = Duration::from_secs(1);
/// Problems listed in status; the rest are counted.
const MAX_PROBLEMS: usize = 5;
/// Accounts whose scheduled custody work (a snapshot, a validation) runs at
/// once, daemon-wide. Each reads the account's whole state; thousands of
/// accounts connecting together (a cold start, a mass drop) each took one
/// in the same seconds, on hundreds of blocking threads contending for
/// sled and the allocator, and the handshakes slowed with them. Queued,
/// they run in the gaps, and the connections go first.
const CUSTODY_SLOTS: usize = 2;

/// The daemon's bound on scheduled custody work, shared by every account
/// ([`CUSTODY_SLOTS`] at once). What a user asks for (`walink backup`,
/// restore, import) does not wait for it.
#[derive(Clone)]
pub struct CustodySlots(Arc<tokio::sync::Semaphore>);

impl Default for CustodySlots {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(CUSTODY_SLOTS)))
    }
}

impl CustodySlots {
    async fn enter(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.0
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the custody semaphore is never closed"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub interval: Duration,
    pub generations: usize,
    pub validate_every: Duration,
    pub size_warn_bytes: u64,
    pub size_critical_bytes: u64,
}

/// Turns a verification into findings: `(problems, warnings)`.
pub fn findings(
    report: &Result<VerifyReport, String>,
    session_exists: bool,
    policy: &Policy,
) -> (Vec<String>, Vec<String>) {
    let report = match report {
        Ok(report) => report,
        Err(e) => return (vec![format!("stored state cannot be read: {e}")], vec![]),
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if let Some(key) = &report.key_problem {
        problems.push(key.clone());
    }
    if report.problem_count > 0 {
        problems.push(format!(
            "{} stored record(s) do not decode",
            report.problem_count
        ));
        problems.extend(report.problems.iter().take(MAX_PROBLEMS).cloned());
    }
    if session_exists && !report.registered {
        problems.push("essential record missing: the device credentials".into());
    }
    let mib = |b: u64| b / (1 << 20);
    if report.bytes > policy.size_critical_bytes {
        problems.push(format!(
            "stored state is {} MiB, above the critical limit of {} MiB",
            mib(report.bytes),
            mib(policy.size_critical_bytes)
        ));
    } else if report.bytes > policy.size_warn_bytes {
        warnings.push(format!(
            "stored state is {} MiB, above the warning limit of {} MiB",
            mib(report.bytes),
            mib(policy.size_warn_bytes)
        ));
    }
    (problems, warnings)
}

/// The check a generation must pass before it is restored: every record
/// decodes (records sealed with this host's key included) and it is linked.
pub fn restorable(backend: &SledBackend) -> impl Fn(&AccountSnapshot) -> Result<(), String> + '_ {
    move |snapshot| {
        let report = snapshot.verify_with(backend.sealer());
        if let Some(key) = report.key_problem {
            return Err(key);
        }
        if !report.is_valid() {
            return Err(format!(
                "{} record(s) do not decode, first: {}",
                report.problem_count,
                report.problems.first().map_or("?", String::as_str)
            ));
        }
        if !report.registered {
            return Err("it holds no linked credentials".into());
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn time_of(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

struct Inner {
    handle: Arc<AccountHandle>,
    backend: Arc<SledBackend>,
    backups: Arc<BackupDb>,
    policy: Policy,
    slots: CustodySlots,
    /// One snapshot at a time per account.
    busy: tokio::sync::Mutex<()>,
    /// The newest generation's id and what checking it found, so an
    /// unchanged generation is not read again at every validation.
    newest_checked: std::sync::Mutex<Option<(u64, Option<String>)>>,
}

/// The custody task of one account; ends when dropped.
pub struct Snapshots {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for Snapshots {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Snapshots {
    /// `checked`: the start's check of this account's state and when it
    /// ran; it stands as the first validation, so a cold start does not
    /// read every account's records twice.
    pub fn spawn(
        handle: Arc<AccountHandle>,
        backend: Arc<SledBackend>,
        backups: Arc<BackupDb>,
        policy: Policy,
        slots: CustodySlots,
        checked: Option<(VerifyReport, SystemTime)>,
    ) -> Snapshots {
        if let Some(newest) = backups
            .list(handle.spec().name.as_str())
            .ok()
            .and_then(|l| l.into_iter().next())
        {
            handle.update_custody(|c| {
                c.last_backup_at = Some(time_of(newest.created_at_ms));
            });
        }
        let inner = Arc::new(Inner {
            handle,
            backend,
            backups,
            policy,
            slots,
            busy: tokio::sync::Mutex::new(()),
            newest_checked: std::sync::Mutex::new(None),
        });
        let validated = checked.is_some();
        if let Some((report, at)) = checked {
            let existed = inner.handle.snapshot().session_exists;
            inner.record_validation(&Ok(report), Vec::new(), at, existed);
        }
        let task = tokio::spawn(run(inner.clone(), validated));
        Snapshots { inner, task }
    }

    pub fn backups(&self) -> &BackupDb {
        &self.inner.backups
    }

    /// Snapshots the account now; `None` when it has no credentials to keep.
    pub async fn take(&self, reason: &str) -> Result<Option<Stored>, String> {
        self.inner.take(reason).await
    }

    /// Restores generation `id` (the newest usable one when `None`): the
    /// client is dropped, the store replaced, and the account reconnects.
    /// Returns the generation used and the newer ones that were skipped.
    pub async fn restore(
        &self,
        id: Option<u64>,
    ) -> Result<(SnapshotInfo, AccountState, Vec<String>), CommandError> {
        let inner = self.inner.clone();
        let name = inner.handle.spec().name.clone();
        let (info, snapshot, skipped) = tokio::task::spawn_blocking(move || {
            let verify = restorable(&inner.backend);
            match id {
                Some(id) => inner
                    .backups
                    .load(&name, id, &verify)
                    .map(|(i, s)| (i, s, Vec::new())),
                None => inner.backups.newest_valid(&name, &verify),
            }
        })
        .await
        .map_err(|e| CommandError::Store(e.to_string()))?
        .map_err(|e| CommandError::Store(e.to_string()))?;
        let generation = info.id;
        let name = self.inner.name().to_owned();
        let pending = snapshot
            .pending_sends(self.inner.backend.sealer())
            .map_err(|e| CommandError::Store(e.to_string()))?;
        self.inner.requeue(pending).await?;
        let state = self
            .inner
            .handle
            .offline(Box::new(move |backend| {
                backend
                    .restore(&snapshot)
                    .map(|()| format!("restored backup generation {generation}"))
                    .map_err(|e| e.to_string())
            }))
            .await?;
        // Asked for: the account is wanted again, so it is restored by
        // itself again too when it gets damaged.
        if let Err(e) = self.inner.backups.set_cleared(&name, false) {
            tracing::warn!(account = %name, error = %e, "clearing the cleared mark failed: {e}");
        }
        self.inner.announce_restore(generation);
        self.inner.validate().await;
        Ok((info, state, skipped))
    }

    /// Replaces the account's state with `snapshot` (an import), after
    /// keeping it as a generation of its own.
    pub async fn import(&self, snapshot: AccountSnapshot) -> Result<AccountState, CommandError> {
        let snapshot = snapshot
            .resealed(None, self.inner.backend.sealer())
            .map_err(|e| CommandError::Rejected(format!("the import is unusable: {e}")))?;
        let verify = restorable(&self.inner.backend);
        verify(&snapshot)
            .map_err(|why| CommandError::Rejected(format!("the import is unusable: {why}")))?;
        let pending = snapshot
            .pending_sends(self.inner.backend.sealer())
            .map_err(|e| CommandError::Rejected(format!("the import is unusable: {e}")))?;
        // Held from the restore to its backup: otherwise the backup taken
        // when the account reconnects can store the imported state first,
        // and the import's own generation is then a duplicate, not kept.
        let busy = self.inner.busy.lock().await;
        self.inner.requeue(pending).await?;
        let state = self
            .inner
            .handle
            .offline(Box::new(move |backend| {
                backend
                    .restore(&snapshot)
                    .map(|()| "imported an account state".to_string())
                    .map_err(|e| e.to_string())
            }))
            .await?;
        self.inner
            .take_locked("imported")
            .await
            .map_err(CommandError::Store)?;
        drop(busy);
        self.inner.validate().await;
        Ok(state)
    }
}

impl Inner {
    fn name(&self) -> &str {
        &self.handle.spec().name
    }

    async fn take(&self, reason: &str) -> Result<Option<Stored>, String> {
        let _busy = self.busy.lock().await;
        self.take_locked(reason).await
    }

    /// [`Self::take`] for a caller that holds `busy`.
    async fn take_locked(&self, reason: &str) -> Result<Option<Stored>, String> {
        let backend = self.backend.clone();
        let backups = self.backups.clone();
        let keep = self.policy.generations;
        let reason_owned = reason.to_owned();
        // Read before the session: a send acked in between is then in the
        // generation as pending, which a restore puts back only when the
        // outbox has lost it (same id: never a second copy).
        let pending = self
            .handle
            .messages()
            .pending_texts()
            .await
            .map_err(|e| e.to_string())?;
        let stored = tokio::task::spawn_blocking(move || {
            if !backend.has_credentials() {
                return Ok(None);
            }
            let snapshot = backend
                .snapshot()
                .and_then(|s| s.with_pending_sends(&pending, backend.sealer()))
                .map_err(|e| e.to_string())?;
            backups
                .store(&snapshot, &reason_owned, keep, now_ms())
                .map(Some)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        if let Some(stored) = &stored {
            self.handle.update_custody(|c| {
                c.last_backup_at = Some(time_of(stored.info.created_at_ms));
            });
            if stored.created {
                tracing::info!(
                    account = %self.name(),
                    event = "backup_done",
                    generation = stored.info.id,
                    size_bytes = stored.info.size_bytes,
                    reason = %reason,
                    pruned = stored.pruned,
                    "stored backup generation {} ({reason})",
                    stored.info.id
                );
                self.handle.announce(AccountEvent::BackupDone {
                    generation: stored.info.id,
                    size_bytes: stored.info.size_bytes,
                });
            }
        }
        Ok(stored)
    }

    /// Puts a generation's pending sends back in the outbox, before the
    /// restored session connects and drains it.
    async fn requeue(&self, pending: Vec<OutboxRecord>) -> Result<(), CommandError> {
        let added = self
            .handle
            .messages()
            .requeue(pending)
            .await
            .map_err(|e| CommandError::Store(e.to_string()))?;
        if added > 0 {
            tracing::warn!(account = %self.name(), event = "requeued_from_backup", count = added, "put {added} pending send(s) from the backup back in the outbox");
        }
        Ok(())
    }

    async fn take_logged(&self, reason: &str) {
        if let Err(e) = self.take(reason).await {
            tracing::error!(account = %self.name(), event = "backup_failed", error = %e, "taking a backup failed: {e}");
        }
    }

    async fn validate(&self) {
        // A pairing that completes while the records are read must not read
        // as credentials gone missing: they were not there yet.
        let existed = self.handle.snapshot().session_exists;
        let backend = self.backend.clone();
        let report =
            tokio::task::spawn_blocking(move || backend.verify().map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        let backup_problem = self.check_newest_backup().await;
        self.record_validation(
            &report,
            backup_problem.into_iter().collect(),
            SystemTime::now(),
            existed,
        );
    }

    /// Puts what a validation found (`more_warnings` besides the report's)
    /// into health and status. `existed`: a session existed when the
    /// records were read; the credentials are missing only if it still does.
    fn record_validation(
        &self,
        report: &Result<VerifyReport, String>,
        more_warnings: Vec<String>,
        at: SystemTime,
        existed: bool,
    ) {
        let exists = existed && self.handle.snapshot().session_exists;
        let (problems, mut warnings) = findings(report, exists, &self.policy);
        warnings.extend(more_warnings);
        let before = self.handle.snapshot().custody.problems;
        if !problems.is_empty() && problems != before {
            tracing::error!(account = %self.name(), event = "validation_failed", "stored state failed validation: {}", problems.join("; "));
        }
        self.handle.update_custody(|c| {
            c.problems = problems;
            c.warnings = warnings;
            c.validated_at = Some(at);
        });
    }

    /// Checks the newest backup generation whole (checksum, records), once
    /// per generation: a damaged backup is news before it is needed.
    async fn check_newest_backup(&self) -> Option<String> {
        let cached = self
            .newest_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let backend = self.backend.clone();
        let backups = self.backups.clone();
        let name = self.name().to_owned();
        let checked_id = cached.as_ref().map(|(id, _)| *id);
        // Off the runtime: a new generation is read from the backup
        // database.
        let checked = tokio::task::spawn_blocking(move || {
            backups.check_newest(&name, checked_id, &restorable(&backend))
        })
        .await;
        let found = match checked {
            Ok(Ok(NewestCheck::Unchanged)) => return cached.and_then(|(_, problem)| problem),
            Ok(Ok(NewestCheck::Checked { id, problem })) => Some((id, problem)),
            Ok(Ok(NewestCheck::NoGeneration) | Err(_)) => None,
            Err(e) => return Some(e.to_string()),
        };
        let problem = found.as_ref().and_then(|(_, problem)| problem.clone());
        *self
            .newest_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = found;
        problem
    }

    fn announce_restore(&self, generation: u64) {
        tracing::warn!(account = %self.name(), event = "restored_from_backup", generation, "restored backup generation {generation}");
        self.handle
            .announce(AccountEvent::RestoredFromBackup { generation });
    }
}

/// The custody loop; `validated`: the start's check stands as the first
/// validation.
async fn run(inner: Arc<Inner>, validated: bool) {
    let mut events = inner.handle.subscribe();
    let mut credentials = inner.backend.watch_credentials();
    // The first scheduled snapshot one interval after start, not at once:
    // connecting takes one, and at a cold start every account taking a
    // snapshot in the same second held the connections back.
    let now = tokio::time::Instant::now();
    let mut scheduled =
        tokio::time::interval_at(now + inner.policy.interval, inner.policy.interval);
    scheduled.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let first_validation = if validated {
        now + inner.policy.validate_every
    } else {
        now
    };
    let mut validation = tokio::time::interval_at(first_validation, inner.policy.validate_every);
    validation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 86_400);
    let settle = tokio::time::sleep_until(far);
    tokio::pin!(settle);
    let mut pending: Option<&'static str> = None;
    loop {
        tokio::select! {
            _ = scheduled.tick() => {
                let _slot = inner.slots.enter().await;
                inner.take_logged("scheduled").await;
            }
            _ = validation.tick() => {
                let _slot = inner.slots.enter().await;
                inner.validate().await;
            }
            event = events.recv() => match event {
                Ok(AccountEvent::Paired { .. }) => pending = Some("paired"),
                Ok(AccountEvent::StateChanged { state: AccountState::Connected, .. }) => {
                    pending.get_or_insert("connected");
                }
                Ok(AccountEvent::StateChanged { state: AccountState::LoggedOut, .. }) => {
                    // The server ended the session: restoring it would only
                    // be refused again, so never do it unasked.
                    if let Err(e) = inner.backups.set_cleared(inner.name(), true) {
                        tracing::error!(account = %inner.name(), error = %e, "marking the session as ended failed: {e}");
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            Some(_) = &mut credentials => {
                pending.get_or_insert("credentials");
                settle.as_mut().reset(tokio::time::Instant::now() + SETTLE);
            }
            _ = &mut settle, if pending.is_some() => {
                settle.as_mut().reset(far);
                if let Some(reason) = pending.take() {
                    let _slot = inner.slots.enter().await;
                    inner.take_logged(reason).await;
                }
            }
        }
        if pending.is_some() && settle.deadline() == far {
            settle.as_mut().reset(tokio::time::Instant::now() + SETTLE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            interval: Duration::from_secs(300),
            generations: 12,
            validate_every: Duration::from_secs(60),
            size_warn_bytes: 1 << 20,
            size_critical_bytes: 4 << 20,
        }
    }

    fn report(bytes: u64) -> VerifyReport {
        VerifyReport {
            records: 10,
            bytes,
            has_device: true,
            registered: true,
            ..VerifyReport::default()
        }
    }

    #[test]
    fn a_healthy_store_has_no_findings() {
        assert_eq!(
            findings(&Ok(report(100)), true, &policy()),
            (vec![], vec![])
        );
    }

    #[test]
    fn size_limits_warn_then_invalidate() {
        let (p, w) = findings(&Ok(report(2 << 20)), true, &policy());
        assert!(p.is_empty());
        assert!(w[0].contains("warning limit of 1 MiB"), "{w:?}");
        let (p, _) = findings(&Ok(report(5 << 20)), true, &policy());
        assert!(p[0].contains("critical limit of 4 MiB"), "{p:?}");
    }

    #[test]
    fn undecodable_missing_and_unreadable_are_problems() {
        let mut r = report(100);
        r.problem_count = 2;
        r.problems = vec!["sessions \"a\": damaged".into()];
        let (p, _) = findings(&Ok(r), true, &policy());
        assert_eq!(p[0], "2 stored record(s) do not decode");
        assert!(p[1].contains("sessions"));

        let mut r = report(100);
        r.registered = false;
        let (p, _) = findings(&Ok(r.clone()), true, &policy());
        assert!(p[0].contains("credentials"));
        assert!(
            findings(&Ok(r), false, &policy()).0.is_empty(),
            "not linked yet is fine"
        );

        let (p, _) = findings(&Err("io error".into()), true, &policy());
        assert!(p[0].contains("cannot be read: io error"));
    }
}
