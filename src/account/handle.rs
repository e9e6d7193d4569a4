//! The account's public face: the daemon starts an account's tasks here and
//! talks to the supervisor only through this handle's commands, so no
//! other layer ever sees the task's state machine.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::command::{Command, CommandError, OfflineWork, Reply};
use super::custody::Custody;
use super::downloads::Downloads;
use super::events::AccountEvent;
use super::outbox::{self, now_ms};
use super::retention::prune_forever;
use super::spec::{AccountSpec, Settings};
use super::state::AccountState;
use super::status::{Snapshot, record_network_check};
use super::supervisor::{Flow, Supervisor};
use super::waiters::StatusWaiters;
use crate::store::{
    DeliveryStatus, Draft, Enqueued, MediaDraft, MessageStore, Retention, SledBackend,
};
use crate::wa::{ConnectionSettings, DiagnoseReport, Session, message_id_for_key, new_message_id};

/// Subscribers that fall further behind than this lose events (and are told).
const EVENT_BUFFER: usize = 1024;

/// What a send answers or reacts to (by message id); both `None` for a
/// plain text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub reply_to: Option<String>,
    /// With this, the text is the reaction's emoji (empty takes it back).
    pub react_to: Option<String>,
    /// A file to send, with the text as its caption.
    pub media: Option<MediaDraft>,
    /// A message this account sent that this one edits (the text is the
    /// new text) or deletes for everyone.
    pub edit_of: Option<String>,
    pub revoke_of: Option<String>,
}

/// The daemon's grip on one account's supervisor task.
pub struct AccountHandle {
    spec: AccountSpec,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Snapshot>,
    status_tx: Arc<watch::Sender<Snapshot>>,
    events: broadcast::Sender<AccountEvent>,
    waiters: Arc<StatusWaiters>,
    messages: MessageStore,
    /// Tells the connection's outbox sender that something was queued.
    kick: Arc<Notify>,
    connection: ConnectionSettings,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    retention: Option<JoinHandle<()>>,
    /// The automatic downloads' fetcher, when the account has them.
    downloads: Option<JoinHandle<()>>,
}

impl AccountHandle {
    /// Starts the supervisor. Enabled accounts with credentials connect at
    /// once, without a QR; others wait for `initialize` (or pair at start
    /// when configured to).
    pub fn spawn(
        spec: AccountSpec,
        backend: Arc<SledBackend>,
        messages: MessageStore,
        settings: Arc<Settings>,
    ) -> Self {
        // The account's own proxy, when it has one, replaces the daemon's.
        let settings = if settings.connection.proxy == spec.proxy {
            settings
        } else {
            let mut own = (*settings).clone();
            own.connection.proxy = spec.proxy.clone();
            Arc::new(own)
        };
        // Before the supervisor exists: nothing can reach the library, and
        // so its records, before they have their place.
        backend.keep_library_records_in(messages.clone());
        backend.serve_resends_from(Arc::new(crate::wa::OutboxResends::new(messages.clone())));
        let session_exists = backend.has_credentials();
        let snapshot = Snapshot {
            name: spec.name.clone(),
            enabled: spec.enabled,
            state: AccountState::Stopped,
            state_reason: (!spec.enabled).then(|| "disabled in the config".to_string()),
            jid: backend.jid(),
            connected_since: None,
            failures: 0,
            automatic_reconnections: 0,
            last_disconnect: None,
            next_retry_at: None,
            keepalive_rtt_ms: None,
            version: None,
            network_problem: None,
            messages_in: 0,
            messages_out: 0,
            session_exists,
            session_valid: backend.load_device().is_ok(),
            size_bytes: backend.size_bytes(),
            qr: None,
            custody: Default::default(),
            storage_fault: None,
        };
        let (status_tx, status) = watch::channel(snapshot);
        let status_tx = Arc::new(status_tx);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (commands, commands_rx) = mpsc::channel(64);
        let start = if spec.enabled && (session_exists || spec.pair_on_start) {
            Flow::Connect
        } else {
            Flow::Idle
        };
        let kick = Arc::new(Notify::new());
        let connection = settings.connection.clone();
        let waiters = Arc::new(StatusWaiters::default());
        let (downloads, downloads_task) = match spec.media.auto {
            Some(_) => {
                let (d, task) =
                    Downloads::spawn(spec.name.clone(), messages.clone(), spec.media.clone());
                (Some(d), Some(task))
            }
            None => (None, None),
        };
        let supervisor = Supervisor {
            downloads,
            waiters: waiters.clone(),
            messages: messages.clone(),
            kick: kick.clone(),
            name: spec.name.clone(),
            backoff: Backoff::new(settings.backoff_steps.clone(), settings.jitter),
            settings,
            backend,
            status: status_tx.clone(),
            events: events.clone(),
            commands: commands_rx,
            session: None,
            session_events: None,
            lost_connection: false,
            redeliver: Arc::new(AtomicBool::new(true)),
        };
        let task = tokio::spawn(supervisor.run(start));
        let retention = (spec.retention != Retention::default()).then(|| {
            tokio::spawn(prune_forever(
                spec.name.clone(),
                messages.clone(),
                spec.retention,
            ))
        });
        Self {
            spec,
            commands,
            status,
            status_tx,
            events,
            waiters,
            messages,
            kick,
            connection,
            task: std::sync::Mutex::new(Some(task)),
            retention,
            downloads: downloads_task,
        }
    }

    /// The account's outbox and inbox.
    pub fn messages(&self) -> &MessageStore {
        &self.messages
    }

    /// Where a `send` waits for its message's server ack.
    pub fn waiters(&self) -> &StatusWaiters {
        &self.waiters
    }

    pub fn spec(&self) -> &AccountSpec {
        &self.spec
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = self.status.borrow().clone();
        snapshot.storage_fault = self.messages.fault();
        snapshot
    }

    /// A receiver that sees every change of the snapshot.
    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        self.status.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AccountEvent> {
        self.events.subscribe()
    }

    /// Lets a companion task (snapshots) keep its part of the snapshot.
    pub(crate) fn update_custody(&self, update: impl FnOnce(&mut Custody)) {
        self.status_tx.send_modify(|s| update(&mut s.custody));
    }

    /// Tells subscribers something a companion task did.
    pub(crate) fn announce(&self, event: AccountEvent) {
        let _ = self.events.send(event);
    }

    /// Drops the client, runs `work` on the store, then connects when the
    /// account has credentials (else waits, as after `clear-session`).
    pub async fn offline(&self, work: OfflineWork) -> Result<AccountState, CommandError> {
        self.ask(|reply| Command::Offline { work, reply }).await
    }

    pub async fn initialize(&self) -> Result<AccountState, CommandError> {
        self.ask(Command::Initialize).await
    }

    pub async fn reconnect(&self) -> Result<AccountState, CommandError> {
        self.ask(Command::Reconnect).await
    }

    pub async fn restart(&self) -> Result<AccountState, CommandError> {
        self.ask(Command::Restart).await
    }

    pub async fn clear_session(&self) -> Result<AccountState, CommandError> {
        self.ask(Command::ClearSession).await
    }

    /// The id a `send` with idempotency `key` queues its message under:
    /// derived from the key, else new. Known before the send, so a caller
    /// can wait for the message's status without reading the store again.
    pub fn message_id(&self, key: Option<&str>) -> String {
        match key {
            Some(key) => message_id_for_key(&self.spec.name, key),
            None => new_message_id(&self.spec.name),
        }
    }

    /// Queues a text for `to` under `id` (see [`Self::message_id`]) and
    /// resolves once it is durable; it goes out whenever the account is
    /// connected. A message already queued under `id` (a retry with the
    /// same idempotency `key`) is returned instead of being queued again.
    /// Progress arrives as `MessageStatus` events.
    pub async fn send(
        &self,
        id: String,
        to: String,
        text: String,
        key: Option<String>,
        context: Context,
    ) -> Result<Enqueued, CommandError> {
        if !self.spec.enabled {
            return Err(CommandError::InvalidState {
                account: self.spec.name.clone(),
                state: self.snapshot().state,
                what: "the account is disabled in the config; enable it and reload".into(),
            });
        }
        let own = self.status.borrow().jid.clone();
        let draft = Draft {
            id: id.clone(),
            to: to.clone(),
            text,
            idempotency_key: key,
            reply_to: context.reply_to,
            react_to: context.react_to,
            media: context.media,
            edit_of: context.edit_of,
            revoke_of: context.revoke_of,
        };
        let enqueued = crate::messages::send(&self.messages, draft, own.as_deref(), now_ms())
            .await
            .map_err(|e| CommandError::Store(e.to_string()))?;
        if enqueued.created {
            outbox::announce(&self.events, &id, &to, DeliveryStatus::Queued, None);
            self.kick.notify_one();
        }
        Ok(enqueued)
    }

    /// The account's connection, while it is connected: for questions to
    /// the server that are not messages (who is on WhatsApp, groups).
    pub async fn live_session(&self) -> Result<Arc<Session>, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Connection(tx))
            .await
            .map_err(|_| CommandError::Gone)?;
        rx.await
            .map_err(|_| CommandError::Gone)?
            .ok_or_else(|| CommandError::NotConnected {
                account: self.spec.name.clone(),
                state: self.snapshot().state,
            })
    }

    pub async fn pair_code(&self, phone: String) -> Result<String, CommandError> {
        self.ask(|reply| Command::PairCode { phone, reply }).await
    }

    /// Answers once the supervisor has come round its loop: proof it is not
    /// wedged, which is what the systemd watchdog must rest on.
    pub async fn ping(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Ping(tx)).await.is_ok() && rx.await.is_ok()
    }

    /// The connection settings this account dials with (its own proxy included).
    pub fn connection(&self) -> ConnectionSettings {
        self.connection.clone()
    }

    /// Records the outcome of a network check in the account's health.
    pub fn record_network_check(&self, report: &DiagnoseReport) {
        record_network_check(&self.status_tx, &self.spec.name, report);
    }

    /// Disconnects cleanly, flushes the store and ends the supervisor.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        if let Some(retention) = &self.retention {
            retention.abort();
        }
        if let Some(downloads) = &self.downloads {
            downloads.abort();
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| CommandError::Gone)?;
        rx.await.map_err(|_| CommandError::Gone)?
    }
}
