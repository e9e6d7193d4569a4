//! The set of running account supervisors, and how a new config changes it:
//! added accounts start, removed ones stop, changed ones restart, and the
//! others are not touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::RwLock;

use super::recovery::Stores;
use crate::account::snapshots::{CustodySlots, Policy, Snapshots};
use crate::account::{AccountHandle, AccountSpec, HandshakeGate, Settings};
use crate::config::{AccountConfig, Config};
use crate::messages::media::{AutoDownload, MediaSettings};
use crate::store::{BackupDb, MessageDb, Retention, StateDb, StoreError, VerifyReport};
use crate::wa::ConnectionSettings;

/// An attempt that finds the handshake gate full waits up to this much,
/// times `connection.jitter`, before it queues (`account/gate.rs`).
const HERD_SPREAD: Duration = Duration::from_secs(1);

pub struct Accounts {
    db: Arc<StateDb>,
    messages: Arc<MessageDb>,
    settings: RwLock<Arc<Settings>>,
    handles: RwLock<BTreeMap<String, Arc<AccountHandle>>>,
    backups: Arc<BackupDb>,
    policy: Policy,
    /// Shared by every account's snapshot task.
    custody_slots: CustodySlots,
    /// Each account's snapshot task, next to its supervisor.
    custody: std::sync::Mutex<BTreeMap<String, Arc<Snapshots>>>,
    /// Checks the message database on the validation schedule.
    checker: tokio::task::JoinHandle<()>,
    /// `daemon.send_file_max_mib` in bytes; a reload changes it for the
    /// next file without touching any account.
    send_file_max_bytes: std::sync::atomic::AtomicU64,
}

pub fn policy(config: &Config) -> Policy {
    let s = &config.storage;
    Policy {
        interval: s.snapshot_interval(),
        generations: s.snapshot_generations,
        validate_every: s.validate_interval(),
        size_warn_bytes: s.size_warn_mib << 20,
        size_critical_bytes: s.size_critical_mib << 20,
    }
}

/// The account as configured. At start and at every reload, so a
/// `media_dir` that automatic fetches cannot write is said at once rather
/// than at the first file.
fn spec(account: &AccountConfig) -> AccountSpec {
    if !account.media.auto_download.is_empty()
        && let Err(e) = crate::messages::media::check_writable(&account.media.dir)
    {
        let dir = account.media.dir.display();
        tracing::warn!(
            account = %account.name,
            media_dir = %dir,
            error = %e,
            event = "media_dir_unwritable",
            "account {}: walinkd cannot write media_dir {dir} ({e}), so auto_download cannot save files; under the packaged service add `ReadWritePaths={dir}` in a drop-in (`systemctl edit walink`), or leave media_dir out to use the state directory",
            account.name
        );
    }
    AccountSpec {
        proxy: account.proxy.clone(),
        name: account.name.clone(),
        enabled: account.enabled,
        pair_on_start: account.pair_on_start,
        retention: Retention {
            max_age: account
                .retention_days
                .map(|days| Duration::from_secs(u64::from(days) * 86_400)),
            max_messages: account.retention_max_messages,
        },
        media: MediaSettings {
            dir: account.media.dir.clone(),
            auto: (!account.media.auto_download.is_empty()).then(|| AutoDownload {
                kinds: account.media.auto_download.clone(),
                max_bytes: account.media.auto_download_max_mib << 20,
            }),
        },
        keep_revoked_text: account.keep_revoked_text,
    }
}

pub fn settings(config: &Config) -> Settings {
    let c = &config.connection;
    Settings {
        connection: ConnectionSettings {
            url: c.url.clone(),
            connect_timeout: c.connect_timeout(),
            client_version: c.client_version,
            ip_family: c.ip_family,
            proxy: c.proxy.clone(),
        },
        backoff_steps: c
            .backoff_secs
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect(),
        jitter: c.jitter,
        handshakes: HandshakeGate::new(c.max_concurrent_handshakes, HERD_SPREAD.mul_f64(c.jitter)),
    }
}

/// How often the running daemon checks the whole message database. A
/// `quick_check` reads every page, that is the whole history: once a minute
/// (the validation schedule) it would cost as much as the history is large.
/// Damage in a page that is used shows at once as an error of that read or
/// write; this finds it in pages nothing reads.
const MESSAGES_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// `quick_check` of the message database every `every` (the full
/// `integrity_check` runs at start): it reads the pages, but not every row
/// against every index, and one check covers all accounts.
async fn check_messages(messages: Arc<MessageDb>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let _ = messages.validate(false).await;
    }
}

/// What a reload did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
}

impl Accounts {
    /// Opens every configured account's store and starts its supervisor.
    pub fn start(stores: Stores, config: &Config) -> Result<Self, StoreError> {
        let Stores {
            state: db,
            backups,
            messages,
            mut verified,
        } = stores;
        let settings = Arc::new(settings(config));
        let policy = policy(config);
        let checker = tokio::spawn(check_messages(
            messages.clone(),
            policy.validate_every.max(MESSAGES_CHECK_EVERY),
        ));
        let mut accounts = Self {
            db: Arc::new(db),
            messages,
            checker,
            settings: RwLock::new(settings.clone()),
            handles: RwLock::new(BTreeMap::new()),
            backups,
            policy,
            custody_slots: CustodySlots::default(),
            custody: Default::default(),
            send_file_max_bytes: (config.daemon.send_file_max_mib << 20).into(),
        };
        // Each account's custody lists its backups as it starts: one open
        // of the backup database for all of them, not one each.
        let open = accounts
            .backups
            .hold_open()
            .map_err(|e| tracing::warn!(error = %e, "opening the backup database failed: {e}"))
            .ok();
        let mut handles = BTreeMap::new();
        for account in &config.accounts {
            let checked = verified.remove(&account.name);
            let handle = accounts.spawn(spec(account), &settings, checked)?;
            handles.insert(account.name.clone(), handle);
        }
        drop(open);
        *accounts.handles.get_mut() = handles;
        Ok(accounts)
    }

    /// Starts an account's supervisor and its snapshot task; `checked` is
    /// the start's check of its state, if it had one.
    fn spawn(
        &self,
        spec: AccountSpec,
        settings: &Arc<Settings>,
        checked: Option<(VerifyReport, SystemTime)>,
    ) -> Result<Arc<AccountHandle>, StoreError> {
        let backend = self.db.account(&spec.name)?;
        let messages = self
            .messages
            .account(&spec.name)?
            .keeping_revoked_text(spec.keep_revoked_text);
        let name = spec.name.clone();
        let handle = Arc::new(AccountHandle::spawn(
            spec,
            backend.clone(),
            messages,
            settings.clone(),
        ));
        let snapshots = Snapshots::spawn(
            handle.clone(),
            backend,
            self.backups.clone(),
            self.policy.clone(),
            self.custody_slots.clone(),
            checked,
        );
        self.custody
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Arc::new(snapshots));
        Ok(handle)
    }

    /// The live store of account `name`.
    pub fn backend(&self, name: &str) -> Result<Arc<crate::store::SledBackend>, StoreError> {
        self.db.account(name)
    }

    /// The snapshot task of account `name`.
    pub fn snapshots(&self, name: &str) -> Option<Arc<Snapshots>> {
        self.custody
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub async fn get(&self, name: &str) -> Option<Arc<AccountHandle>> {
        self.handles.read().await.get(name).cloned()
    }

    pub async fn names(&self) -> Vec<String> {
        self.handles.read().await.keys().cloned().collect()
    }

    pub async fn all(&self) -> Vec<Arc<AccountHandle>> {
        self.handles.read().await.values().cloned().collect()
    }

    /// The largest file `send` takes, in bytes.
    pub fn send_file_max_bytes(&self) -> u64 {
        self.send_file_max_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The daemon-wide connection settings (accounts may have their own proxy).
    pub async fn connection(&self) -> ConnectionSettings {
        self.settings.read().await.connection.clone()
    }

    /// Checks the network path once per distinct set of connection settings
    /// (the proxy may differ per account) and records the verdict in the
    /// health of every enabled account that dials that way.
    pub async fn check_network(&self) {
        let mut groups: Vec<(ConnectionSettings, Vec<Arc<AccountHandle>>)> = Vec::new();
        for handle in self.all().await.into_iter().filter(|h| h.spec().enabled) {
            let connection = handle.connection();
            match groups.iter_mut().find(|(c, _)| *c == connection) {
                Some((_, members)) => members.push(handle),
                None => groups.push((connection, vec![handle])),
            }
        }
        // A check dials the server as a login does: it takes a place at the
        // handshake gate, so a cold start stays within the bound.
        let gate = self.settings.read().await.handshakes.clone();
        let checks = groups.into_iter().map(|(connection, members)| {
            let gate = gate.clone();
            async move {
                let account = (members.len() == 1).then(|| members[0].spec().name.clone());
                let report = {
                    let _place = gate.enter().await;
                    crate::wa::diagnose(&connection, account.as_deref()).await
                };
                for handle in &members {
                    handle.record_network_check(&report);
                }
            }
        });
        futures::future::join_all(checks).await;
    }

    /// Applies a new config. Connection settings that changed restart every
    /// account (they all dial with them); otherwise only accounts whose own
    /// entry changed are restarted.
    pub async fn reload(&self, config: &Config) -> Result<ReloadSummary, StoreError> {
        self.send_file_max_bytes.store(
            config.daemon.send_file_max_mib << 20,
            std::sync::atomic::Ordering::Relaxed,
        );
        let new_settings = Arc::new(settings(config));
        let settings_changed = {
            let old = self.settings.read().await;
            **old != *new_settings
        };
        // Unchanged settings keep the running ones: every account must
        // share one handshake gate.
        let new_settings = if settings_changed {
            *self.settings.write().await = new_settings.clone();
            new_settings
        } else {
            self.settings.read().await.clone()
        };
        let mut handles = self.handles.write().await;
        let mut summary = ReloadSummary::default();
        let wanted: BTreeMap<&str, &AccountConfig> = config
            .accounts
            .iter()
            .map(|a| (a.name.as_str(), a))
            .collect();
        let gone: Vec<String> = handles
            .keys()
            .filter(|name| !wanted.contains_key(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(handle) = handles.remove(&name) {
                handle.stop().await;
            }
            self.custody
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
            summary.removed.push(name);
        }
        for (name, account) in wanted {
            let new_spec = spec(account);
            match handles.get(name) {
                Some(handle) if *handle.spec() == new_spec && !settings_changed => continue,
                Some(handle) => {
                    handle.stop().await;
                    summary.restarted.push(name.to_string());
                }
                None => summary.added.push(name.to_string()),
            }
            let handle = self.spawn(new_spec, &new_settings, None)?;
            handles.insert(name.to_string(), handle);
        }
        Ok(summary)
    }

    /// Stops every supervisor (closing connections) and flushes the
    /// stores, within `deadline` whatever the disk does: a step that does
    /// not finish in time is logged and given up (everything a client was
    /// told is stored was committed before it was told).
    pub async fn stop_all(&self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        self.checker.abort();
        let handles: Vec<_> = std::mem::take(&mut *self.handles.write().await)
            .into_values()
            .collect();
        let stops = futures::future::join_all(handles.iter().map(|h| h.stop()));
        if tokio::time::timeout_at(until, stops).await.is_err() {
            tracing::error!(
                "the accounts did not stop within {deadline:?}; going on with the exit"
            );
        }
        self.custody
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // The message database first: its writer finishes the commit in
        // hand and checkpoints, which a stuck sled flush must not starve.
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let messages = self.messages.clone();
        let _ = tokio::task::spawn_blocking(move || messages.close(left / 2)).await;
        let backups = self.backups.clone();
        let state = self.db.clone();
        let flush = tokio::task::spawn_blocking(move || {
            if let Err(e) = backups.flush() {
                tracing::error!(error = %e, "flushing the backup database failed: {e}");
            }
            if let Err(e) = state.flush() {
                tracing::error!(error = %e, "flushing the state database failed: {e}");
            }
        });
        if tokio::time::timeout_at(until, flush).await.is_err() {
            tracing::error!(
                "flushing the sled databases did not finish within {deadline:?}; giving up on it"
            );
        }
    }

    /// True when every supervisor answers within `deadline`: the proof of
    /// life the systemd watchdog is fed with.
    pub async fn all_responsive(&self, deadline: Duration) -> bool {
        let handles = self.all().await;
        let pings = futures::future::join_all(handles.iter().map(|h| h.ping()));
        matches!(tokio::time::timeout(deadline, pings).await, Ok(r) if r.iter().all(|ok| *ok))
    }

    /// One line for systemd's STATUS=, e.g. "3 accounts: 2 connected, 1 waiting_for_pairing".
    pub async fn summary_line(&self) -> String {
        let handles = self.all().await;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for h in &handles {
            *counts.entry(h.snapshot().state.to_string()).or_default() += 1;
        }
        let parts: Vec<String> = counts
            .iter()
            .map(|(state, n)| format!("{n} {}", state.replace('_', " ")))
            .collect();
        let noun = if handles.len() == 1 {
            "account"
        } else {
            "accounts"
        };
        if parts.is_empty() {
            "0 accounts".to_string()
        } else {
            format!("{} {noun}: {}", handles.len(), parts.join(", "))
        }
    }
}
