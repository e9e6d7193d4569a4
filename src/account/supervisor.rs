//! One task per account: connects, watches the connection, decides what to
//! do when it ends, and answers the daemon's commands. Everything an account
//! reports (state, counters, QR) comes from here, so status tells the truth.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::backoff::{Backoff, jitter_sample};
use super::custody::Custody;
use super::downloads::Downloads;
use super::events::{AccountEvent, Qr};
use super::outbox::{self, Sender, StoreInbox, apply_status, now_ms};
use super::state::{AccountState, Attempt, Next, next_after};
use super::waiters::StatusWaiters;
use crate::store::{
    DeliveryStatus, Draft, Enqueued, MediaDraft, MessageStore, Retention, SledBackend,
};
use crate::wa::{
    ConnectionSettings, DiagnoseReport, InboxSink, IncomingMessage, ReceiptStatus, Session,
    VersionStatus, WaEvent, diagnose, message_id_for_key, new_message_id,
};

/// A connection this long resets the backoff schedule (DESIGN.md).
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How often a connected account measures its keepalive round trip. The
/// ping is also walink's dead-connection detector: a silent server is
/// noticed within PING_EVERY + PING_TIMEOUT (issue 8 asks for 35 s; the
/// library's own check alone took 40-70 s, see the README's figures).
const PING_EVERY: Duration = Duration::from_secs(12);
/// WhatsApp Web's dead-socket timer is 20 s as well.
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Store size is a scan of the account's trees: refresh it now and then.
const SIZE_EVERY: Duration = Duration::from_secs(60);
/// Subscribers that fall further behind than this lose events (and are told).
const EVENT_BUFFER: usize = 1024;
/// How often old messages are pruned (accounts with a retention limit).
const RETENTION_EVERY: Duration = Duration::from_secs(600);
/// Failed attempts in a row after which the network path is checked step by
/// step (`walink diagnose`), so health says *where* it breaks.
const DIAGNOSE_AFTER_FAILURES: u32 = 3;

/// Settings every supervisor shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub connection: ConnectionSettings,
    pub backoff_steps: Vec<Duration>,
    pub jitter: f64,
    /// Every account's connection attempts pass through this one gate.
    pub handshakes: super::HandshakeGate,
}

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

/// An account as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    pub name: String,
    pub enabled: bool,
    pub pair_on_start: bool,
    /// How much message history to keep.
    pub retention: Retention,
    /// The proxy this account dials through (its own or the daemon's).
    pub proxy: Option<crate::net::Proxy>,
    /// Where received files go and which are fetched as they arrive.
    pub media: crate::messages::media::MediaSettings,
    /// A message deleted for everyone keeps its text in the history.
    pub keep_revoked_text: bool,
}

/// Everything `status` shows about an account, kept current by its supervisor.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: String,
    pub enabled: bool,
    pub state: AccountState,
    pub state_reason: Option<String>,
    pub jid: Option<String>,
    pub connected_since: Option<SystemTime>,
    /// Failed attempts since the account was last connected.
    pub failures: u32,
    pub automatic_reconnections: u64,
    pub last_disconnect: Option<(String, SystemTime)>,
    pub next_retry_at: Option<SystemTime>,
    pub keepalive_rtt_ms: Option<u64>,
    /// The WhatsApp Web version the last connect used, and where it came from.
    pub version: Option<VersionStatus>,
    /// The verdict of the last failed network check, until the account
    /// connects or a check passes.
    pub network_problem: Option<String>,
    /// Messages received and messages the server acknowledged, since start.
    pub messages_in: u64,
    pub messages_out: u64,
    pub session_exists: bool,
    pub session_valid: bool,
    pub size_bytes: u64,
    pub qr: Option<Qr>,
    /// Kept by the account's snapshot task (see `snapshots.rs`).
    pub custody: Custody,
    /// Why the message database takes no writes right now (`disk full: …`).
    pub storage_fault: Option<String>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("account {account} is {state}: {what}")]
    InvalidState {
        account: String,
        state: AccountState,
        what: String,
    },
    #[error(
        "account {account} is not connected ({state}); wait for it to reconnect or run `walink reconnect {account}`"
    )]
    NotConnected {
        account: String,
        state: AccountState,
    },
    #[error("{0}")]
    Rejected(String),
    #[error("the account's store failed: {0}")]
    Store(String),
    #[error("the account supervisor has stopped (daemon shutting down)")]
    Gone,
}

type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// Work on an account's store with no client attached (a restore, an
/// import): the client caches the device in memory and writes it back, so
/// it must be gone first. Returns what to log.
pub type OfflineWork = Box<dyn FnOnce(&SledBackend) -> Result<String, String> + Send>;

enum Command {
    Initialize(Reply<AccountState>),
    Reconnect(Reply<AccountState>),
    Restart(Reply<AccountState>),
    ClearSession(Reply<AccountState>),
    PairCode {
        phone: String,
        reply: Reply<String>,
    },
    Offline {
        work: OfflineWork,
        reply: Reply<AccountState>,
    },
    /// The connection, for a question to the server (usync, groups).
    Connection(oneshot::Sender<Option<Arc<Session>>>),
    Ping(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
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

    /// Queues a text for `to` and resolves once it is durable; it goes out
    /// whenever the account is connected. With an idempotency `key`, the id
    /// derives from it and a message already queued under it is returned
    /// instead of being queued again. Progress arrives as `MessageStatus`
    /// events.
    pub async fn send(
        &self,
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
        let id = match &key {
            Some(key) => message_id_for_key(&self.spec.name, key),
            None => new_message_id(&self.spec.name),
        };
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

    /// Disconnects cleanly and ends the supervisor.
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

/// Where the supervisor goes next.
#[derive(Debug)]
enum Flow {
    /// Nothing to do until a command arrives.
    Idle,
    Connect,
    /// Backoff before the next attempt.
    Wait(Duration),
    Exit,
}

/// Applies the account's retention now and then (in the message
/// database's writer, off the async workers).
async fn prune_forever(account: String, messages: MessageStore, retention: Retention) {
    let mut every = tokio::time::interval(RETENTION_EVERY);
    loop {
        every.tick().await;
        match messages.prune(retention, now_ms()).await {
            Ok(pruned) if pruned.inbox + pruned.outbox > 0 => {
                tracing::info!(account = %account, inbox = pruned.inbox, outbox = pruned.outbox, "pruned old messages");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "pruning old messages failed");
            }
        }
    }
}

struct Supervisor {
    messages: MessageStore,
    downloads: Option<Arc<Downloads>>,
    waiters: Arc<StatusWaiters>,
    kick: Arc<Notify>,
    name: String,
    settings: Arc<Settings>,
    backend: Arc<SledBackend>,
    status: Arc<watch::Sender<Snapshot>>,
    events: broadcast::Sender<AccountEvent>,
    commands: mpsc::Receiver<Command>,
    backoff: Backoff,
    session: Option<Arc<Session>>,
    /// The session's events; taken by the attempt that is running.
    session_events: Option<mpsc::UnboundedReceiver<WaEvent>>,
    /// The last connection ended without anyone asking: the next login is
    /// an automatic reconnection.
    lost_connection: bool,
    /// Until the first connection sent again what an earlier walinkd left
    /// unconfirmed.
    redeliver: Arc<AtomicBool>,
}

impl Supervisor {
    async fn run(mut self, start: Flow) {
        let mut flow = start;
        loop {
            flow = match flow {
                Flow::Idle => self.idle().await,
                Flow::Connect => self.attempt().await,
                Flow::Wait(delay) => self.wait(delay).await,
                Flow::Exit => break,
            };
        }
        self.waiters.close();
        if let Err(e) = self.backend.flush() {
            tracing::warn!(account = %self.name, error = %e, "flushing the account's store at shutdown failed");
        }
    }

    fn state(&self) -> AccountState {
        self.status.borrow().state
    }

    fn set_state(&self, state: AccountState, reason: Option<String>) {
        self.announce_state(state, reason, false);
    }

    /// Sets the state and tells subscribers when it changed, or always with
    /// `force` (each backoff step is news even if the state is not).
    fn announce_state(&self, state: AccountState, reason: Option<String>, force: bool) {
        let mut changed = force;
        self.status.send_modify(|s| {
            changed |= s.state != state || s.state_reason != reason;
            s.state = state;
            s.state_reason = reason.clone();
            if state != AccountState::Reconnecting {
                s.next_retry_at = None;
            }
            if state != AccountState::Connected {
                s.connected_since = None;
            }
            if state != AccountState::WaitingForPairing {
                s.qr = None;
            }
        });
        if changed {
            let snap = self.status.borrow().clone();
            tracing::info!(
                account = %self.name,
                event = "state_changed",
                state = %state,
                reason = reason.as_deref().unwrap_or(""),
                attempt = snap.failures,
                "account is {state}"
            );
            let _ = self.events.send(AccountEvent::StateChanged {
                state,
                reason,
                attempt: (state == AccountState::Reconnecting).then_some(snap.failures),
                next_retry_at: snap.next_retry_at,
            });
        }
    }

    fn refresh_session_facts(&self) {
        let exists = self.backend.has_credentials();
        let valid = self.backend.load_device().is_ok();
        let jid = self.backend.jid();
        let size = self.backend.size_bytes();
        self.status.send_modify(|s| {
            s.session_exists = exists;
            s.session_valid = valid;
            s.size_bytes = size;
            if jid.is_some() {
                s.jid = jid;
            }
        });
    }

    async fn idle(&mut self) -> Flow {
        loop {
            let Some(cmd) = self.commands.recv().await else {
                return Flow::Exit;
            };
            if let Some(flow) = self.command_between_attempts(cmd).await {
                return flow;
            }
        }
    }

    async fn wait(&mut self, delay: Duration) -> Flow {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Flow::Connect,
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { return Flow::Exit };
                    if let Some(flow) = self.command_between_attempts(cmd).await {
                        return flow;
                    }
                }
            }
        }
    }

    /// Commands while no connection is up (idle or waiting out a backoff).
    /// Returns the flow to switch to, if the command changes it.
    async fn command_between_attempts(&mut self, cmd: Command) -> Option<Flow> {
        let state = self.state();
        match cmd {
            Command::Initialize(reply) | Command::Reconnect(reply) => {
                let _ = reply.send(Ok(AccountState::Connecting));
                self.backoff.reset();
                Some(Flow::Connect)
            }
            Command::Restart(reply) => {
                self.drop_session().await;
                let _ = reply.send(Ok(AccountState::Connecting));
                self.backoff.reset();
                Some(Flow::Connect)
            }
            Command::ClearSession(reply) => {
                self.drop_session().await;
                let result = self.wipe_credentials();
                let ok = result.is_ok();
                let _ = reply.send(result.map(|()| AccountState::Stopped));
                ok.then_some(Flow::Idle)
            }
            Command::Offline { work, reply } => {
                self.drop_session().await;
                Some(self.run_offline(work, reply))
            }
            Command::PairCode { reply, .. } => {
                let _ = reply.send(Err(CommandError::InvalidState {
                    account: self.name.clone(),
                    state,
                    what: format!(
                        "a pair code needs a pairing connection; run `walink initialize {}` first",
                        self.name
                    ),
                }));
                None
            }
            Command::Connection(reply) => {
                let _ = reply.send(None);
                None
            }
            Command::Ping(reply) => {
                let _ = reply.send(());
                None
            }
            Command::Stop(reply) => {
                self.drop_session().await;
                self.set_state(AccountState::Stopped, Some("daemon stopping".into()));
                let _ = reply.send(());
                Some(Flow::Exit)
            }
        }
    }

    /// Ends the client for good (it cannot be run again after this).
    async fn drop_session(&mut self) {
        self.session_events = None;
        if let Some(session) = self.session.take() {
            session.disconnect().await;
        }
    }

    fn run_offline(&mut self, work: OfflineWork, reply: Reply<AccountState>) -> Flow {
        self.backoff.reset();
        let result = work(&self.backend);
        self.status.send_modify(|s| s.jid = None);
        self.refresh_session_facts();
        let linked = self.backend.has_credentials();
        match result {
            Ok(done) => {
                tracing::info!(account = %self.name, "{done}");
                let state = if linked {
                    AccountState::Connecting
                } else {
                    AccountState::Stopped
                };
                let _ = reply.send(Ok(state));
            }
            Err(why) => {
                tracing::error!(account = %self.name, error = %why, "store work failed: {why}");
                let _ = reply.send(Err(CommandError::Store(why)));
            }
        }
        if linked {
            Flow::Connect
        } else {
            self.set_state(
                AccountState::Stopped,
                Some("no credentials: link it with `walink qr`".into()),
            );
            Flow::Idle
        }
    }

    fn wipe_credentials(&mut self) -> Result<(), CommandError> {
        self.backend
            .clear()
            .map_err(|e| CommandError::Store(e.to_string()))?;
        self.status.send_modify(|s| {
            s.jid = None;
        });
        self.refresh_session_facts();
        self.set_state(
            AccountState::Stopped,
            Some("session cleared: link it again with `walink qr`".into()),
        );
        Ok(())
    }

    async fn session(&mut self) -> Result<Arc<Session>, String> {
        if let Some(session) = &self.session {
            return Ok(session.clone());
        }
        let inbox = Arc::new(CountingInbox {
            inner: Arc::new(StoreInbox {
                store: self.messages.clone(),
                events: self.events.clone(),
                downloads: self.downloads.clone(),
            }),
            status: self.status.clone(),
        });
        let status = self.status.clone();
        let on_version = move |v: VersionStatus| {
            status.send_if_modified(|s| s.version.replace(v.clone()) != Some(v));
        };
        let (session, events) = Session::build(
            &self.name,
            self.backend.clone(),
            &self.settings.connection,
            Some(inbox),
            Arc::new(on_version),
        )
        .await
        .map_err(|e| e.to_string())?;
        let session = Arc::new(session);
        if let Some(downloads) = &self.downloads {
            downloads.use_session(&session);
        }
        self.session = Some(session.clone());
        self.session_events = Some(events);
        Ok(session)
    }

    /// One connection, from dial to teardown, then the decision on what next.
    async fn attempt(&mut self) -> Flow {
        let session = match self.session().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(account = %self.name, error = %e, "cannot start the WhatsApp client");
                self.set_state(AccountState::Failed, Some(e));
                return Flow::Idle;
            }
        };
        let failures = self.backoff.failures() as u32;
        self.status.send_modify(|s| s.failures = failures);
        // The retry announced by `decide` is happening now.
        self.status.send_modify(|s| s.next_retry_at = None);
        if failures > 0 || self.lost_connection {
            let reason = self.status.borrow().state_reason.clone();
            self.set_state(AccountState::Reconnecting, reason);
        } else {
            self.set_state(AccountState::Connecting, None);
        }

        let Some(mut events) = self.session_events.take() else {
            // A session without its event stream cannot be supervised: start over.
            self.session = None;
            return Flow::Connect;
        };
        let mut attempt = Attempt::default();
        let mut after: Option<Flow> = None;
        let mut connected_at: Option<Instant> = None;
        let (ping_tx, mut ping_rx) = mpsc::channel::<Option<u64>>(1);
        // Dropped with this attempt: a ping still in flight from it must not
        // judge the next connection.
        let mut pings = tokio::task::JoinSet::new();
        let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut ping_every = tokio::time::interval(PING_EVERY);
        let mut size_every = tokio::time::interval(SIZE_EVERY);
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let stable = tokio::time::sleep_until(far);
        tokio::pin!(stable);

        // A place at the daemon's handshake gate, held from the dial until
        // logged in (or showing a QR), or until the attempt ends. Commands
        // are answered while waiting for it.
        let gate = self.settings.handshakes.clone();
        let admission = async move { gate.enter().await };
        tokio::pin!(admission);
        let mut handshake = None;
        let mut admitted = false;
        let runner = session.clone();
        let run = async move { runner.run_once().await };
        tokio::pin!(run);
        let mut sender: Option<JoinHandle<()>> = None;
        loop {
            if !admitted && after.is_some() {
                break;
            }
            tokio::select! {
                permit = &mut admission, if !admitted => {
                    admitted = true;
                    handshake = Some(permit);
                }
                _ = &mut run, if admitted => break,
                Some(ev) = events.recv() => {
                    if matches!(ev, WaEvent::Connected | WaEvent::Qr { .. }) {
                        handshake = None;
                    }
                    if matches!(ev, WaEvent::Connected) {
                        session.version_worked();
                        connected_at = Some(Instant::now());
                        stable.as_mut().reset(tokio::time::Instant::now() + STABLE_AFTER);
                        if let Some(old) = sender.take() {
                            old.abort();
                        }
                        sender = Some(tokio::spawn(
                            Sender {
                                account: self.name.clone(),
                                store: self.messages.clone(),
                                session: session.clone(),
                                kick: self.kick.clone(),
                                events: self.events.clone(),
                                waiters: self.waiters.clone(),
                                redeliver: self.redeliver.clone(),
                            }
                            .run(),
                        ));
                    }
                    if let Some(flow) = self.on_event(ev, &mut attempt, &session).await {
                        after.get_or_insert(flow);
                    }
                }
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else {
                        session.disconnect().await;
                        after = Some(Flow::Exit);
                        continue;
                    };
                    if let Some(flow) = self.command_during_attempt(cmd, &session).await {
                        after.get_or_insert(flow);
                    }
                }
                _ = &mut stable => {
                    self.backoff.reset();
                    stable.as_mut().reset(far);
                }
                _ = ping_every.tick(), if connected_at.is_some() => {
                    let pinger = session.clone();
                    let tx = ping_tx.clone();
                    let silent = silent.clone();
                    pings.spawn(async move {
                        // Our own deadline, a little short of the library's,
                        // so only real silence counts (not an error reply).
                        let answer = tokio::time::timeout(
                            PING_TIMEOUT,
                            pinger.ping(PING_TIMEOUT + Duration::from_secs(5)),
                        )
                        .await;
                        let rtt = match answer {
                            Ok(rtt) => rtt.ok().map(|d| d.as_millis() as u64),
                            Err(_) => {
                                silent.store(true, std::sync::atomic::Ordering::Release);
                                // From this task, not the supervisor's loop:
                                // it must never wait on the library's teardown.
                                pinger.end_connection().await;
                                None
                            }
                        };
                        let _ = tx.try_send(rtt);
                    });
                }
                Some(rtt) = ping_rx.recv() => {
                    if rtt.is_some() {
                        self.status.send_modify(|s| s.keepalive_rtt_ms = rtt);
                    }
                }
                _ = size_every.tick() => self.refresh_session_facts(),
            }
        }
        drop(handshake);
        // What the sender had not sent yet stays queued for the next connection.
        if let Some(sender) = sender {
            sender.abort();
        }
        // The library dispatches the end-of-connection events before `run`
        // returns; collect them so the decision sees the whole story.
        while let Ok(ev) = events.try_recv() {
            if let Some(flow) = self.on_event(ev, &mut attempt, &session).await {
                after.get_or_insert(flow);
            }
        }
        pings.abort_all();
        attempt.silent = silent.load(std::sync::atomic::Ordering::Acquire);
        attempt.dial_error = session.take_dial_error();
        if self.session.is_some() {
            self.session_events = Some(events);
        }
        self.status.send_modify(|s| s.connected_since = None);
        if let Some(flow) = after {
            return self.apply_override(flow).await;
        }
        self.decide(&attempt).await
    }

    async fn apply_override(&mut self, flow: Flow) -> Flow {
        if matches!(flow, Flow::Exit) {
            self.drop_session().await;
            self.set_state(AccountState::Stopped, Some("daemon stopping".into()));
        }
        flow
    }

    async fn decide(&mut self, attempt: &Attempt) -> Flow {
        if attempt.connected {
            self.lost_connection = true;
        }
        let now = SystemTime::now();
        let (delay, reason) = match next_after(attempt) {
            Next::Immediately { reason } => {
                tracing::info!(account = %self.name, event = "disconnected", reason = %reason, "reconnecting at once: {reason}");
                self.record_disconnect(&reason, now);
                return Flow::Connect;
            }
            Next::Stop { state, reason } => {
                self.record_disconnect(&reason, now);
                tracing::warn!(account = %self.name, event = "stopped", reason = %reason, "not reconnecting: {reason}");
                self.drop_session().await;
                if state == AccountState::LoggedOut {
                    if let Err(e) = self.backend.clear() {
                        tracing::error!(account = %self.name, error = %e, "removing the logged-out credentials failed");
                    }
                    self.status.send_modify(|s| s.jid = None);
                    self.refresh_session_facts();
                }
                self.lost_connection = false;
                self.set_state(state, Some(reason));
                return Flow::Idle;
            }
            Next::Backoff { reason } => (self.backoff.next_delay(jitter_sample()), reason),
            Next::SlowDown { reason } => {
                self.backoff.penalize();
                (self.backoff.next_delay(jitter_sample()), reason)
            }
            Next::WaitFor { delay, reason } => (delay, reason),
        };
        self.record_disconnect(&reason, now);
        let failures = self.backoff.failures() as u32;
        if failures == DIAGNOSE_AFTER_FAILURES {
            let status = self.status.clone();
            let settings = self.settings.connection.clone();
            let name = self.name.clone();
            tokio::spawn(async move {
                let report = diagnose(&settings, Some(&name)).await;
                record_network_check(&status, &name, &report);
            });
        }
        self.status.send_modify(|s| {
            s.failures = failures;
            s.next_retry_at = Some(now + delay);
        });
        tracing::info!(account = %self.name, event = "backoff", reason = %reason, attempt = failures, "retrying in {delay:.1?}: {reason}");
        self.announce_state(AccountState::Reconnecting, Some(reason), true);
        Flow::Wait(delay)
    }

    fn record_disconnect(&self, reason: &str, at: SystemTime) {
        self.status
            .send_modify(|s| s.last_disconnect = Some((reason.to_string(), at)));
    }

    /// Applies one library event. Returns a flow only when the event itself
    /// settles what comes after this attempt.
    async fn on_event(
        &mut self,
        ev: WaEvent,
        attempt: &mut Attempt,
        session: &Arc<Session>,
    ) -> Option<Flow> {
        match ev {
            WaEvent::Qr { code, timeout } => {
                let qr = Qr { code, timeout };
                self.set_state(AccountState::WaitingForPairing, None);
                self.status.send_modify(|s| s.qr = Some(qr.clone()));
                let _ = self.events.send(AccountEvent::Qr(qr));
            }
            WaEvent::QrExhausted => {
                attempt.qr_exhausted = true;
                end_connection_soon(session);
            }
            WaEvent::PairCode { .. } => {}
            WaEvent::Paired { jid } => {
                attempt.paired = true;
                tracing::info!(account = %self.name, event = "paired", jid = %jid, "linked to {jid}");
                self.status.send_modify(|s| s.jid = Some(jid.clone()));
                let _ = self.events.send(AccountEvent::Paired { jid });
            }
            WaEvent::PairFailed { error } => {
                tracing::warn!(account = %self.name, event = "pair_failed", reason = %error, "pairing failed: {error}");
            }
            WaEvent::Connected => {
                attempt.connected = true;
                let automatic = std::mem::take(&mut self.lost_connection);
                let jid = session.jid();
                self.status.send_modify(|s| {
                    s.connected_since = Some(SystemTime::now());
                    s.failures = 0;
                    s.network_problem = None;
                    s.qr = None;
                    if automatic {
                        s.automatic_reconnections += 1;
                    }
                    if jid.is_some() {
                        s.jid = jid;
                    }
                });
                self.refresh_session_facts();
                self.set_state(AccountState::Connected, None);
            }
            WaEvent::Disconnected { clean, reason } => {
                attempt.clean_close = Some(clean);
                tracing::debug!(account = %self.name, reason = %reason, "transport ended");
            }
            WaEvent::LoggedOut { .. } => attempt.logged_out = true,
            WaEvent::Replaced => attempt.replaced = true,
            // The library closes the connection itself on 401 and conflicts
            // (and the server closes after any stream error); ending it from
            // here as well raced the library's own teardown.
            WaEvent::StreamError { code } => attempt.stream_error = Some(code),
            WaEvent::TemporaryBan { expire } => attempt.banned_for = Some(expire),
            WaEvent::ServerAck { id, error } => self.on_server_ack(id, error).await,
            WaEvent::Receipt { ids, status, from } => {
                let status = match status {
                    ReceiptStatus::Delivered => DeliveryStatus::Delivered,
                    ReceiptStatus::Read => DeliveryStatus::Read,
                };
                for id in ids {
                    if !self.set_status(&id, status, None).await {
                        // Not ours (sent by another device of the account).
                        outbox::announce(&self.events, &id, &from, status, None);
                    }
                }
            }
            WaEvent::Message(m) => {
                tracing::debug!(account = %self.name, event = "message_received", "message received");
                self.status.send_modify(|s| s.messages_in += 1);
                let _ =
                    self.events
                        .send(AccountEvent::Message(Box::new(crate::messages::unstored(
                            &m,
                        ))));
            }
        }
        None
    }

    /// Returns whether `id` is an outbox message.
    async fn set_status(&self, id: &str, status: DeliveryStatus, reason: Option<String>) -> bool {
        apply_status(
            &self.name,
            &self.messages,
            &self.events,
            &self.waiters,
            id,
            status,
            reason,
        )
        .await
    }

    /// An ack ends a message's time in the outbox; a nack fails it, unless
    /// the server only asked to try again later.
    async fn on_server_ack(&self, id: String, error: Option<String>) {
        let Some(code) = error else {
            self.status.send_modify(|s| s.messages_out += 1);
            if !self.set_status(&id, DeliveryStatus::ServerAck, None).await {
                outbox::announce(&self.events, &id, "", DeliveryStatus::ServerAck, None);
            }
            return;
        };
        let reason = format!("server refused the message (error {code})");
        if is_transient_nack(&code) {
            match self.messages.retry_later(&id, reason, now_ms()).await {
                Ok(Some(_)) => self.kick.notify_one(),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(account = %self.name, error = %e, "recording a nack failed");
                }
            }
        } else if !self
            .set_status(&id, DeliveryStatus::Failed, Some(reason.clone()))
            .await
        {
            let _ = self.events.send(AccountEvent::MessageStatus {
                id,
                chat: String::new(),
                status: DeliveryStatus::Failed,
                reason: Some(reason),
            });
        }
    }

    async fn command_during_attempt(
        &mut self,
        cmd: Command,
        session: &Arc<Session>,
    ) -> Option<Flow> {
        let state = self.state();
        match cmd {
            Command::Initialize(reply) => {
                let _ = reply.send(Ok(state));
                None
            }
            Command::Reconnect(reply) => {
                self.lost_connection = false;
                self.backoff.reset();
                end_connection_soon(session);
                let _ = reply.send(Ok(AccountState::Reconnecting));
                Some(Flow::Connect)
            }
            Command::Restart(reply) => {
                self.lost_connection = false;
                self.backoff.reset();
                session.disconnect().await;
                self.session = None;
                let _ = reply.send(Ok(AccountState::Connecting));
                Some(Flow::Connect)
            }
            Command::ClearSession(reply) => {
                if session.is_connected() {
                    session.logout().await;
                } else {
                    session.disconnect().await;
                }
                self.session = None;
                self.lost_connection = false;
                let result = self.wipe_credentials();
                let _ = reply.send(result.map(|()| AccountState::Stopped));
                Some(Flow::Idle)
            }
            Command::Offline { work, reply } => {
                session.disconnect().await;
                self.session = None;
                self.lost_connection = false;
                Some(self.run_offline(work, reply))
            }
            Command::PairCode { phone, reply } => {
                if state != AccountState::WaitingForPairing {
                    let _ = reply.send(Err(CommandError::InvalidState {
                        account: self.name.clone(),
                        state,
                        what: "a pair code can only be requested while waiting for pairing".into(),
                    }));
                    return None;
                }
                let session = session.clone();
                tokio::spawn(async move {
                    let result = session
                        .pair_code(&phone)
                        .await
                        .map_err(|e| CommandError::Rejected(e.to_string()));
                    let _ = reply.send(result);
                });
                None
            }
            Command::Connection(reply) => {
                let _ = reply.send(session.is_connected().then(|| session.clone()));
                None
            }
            Command::Ping(reply) => {
                let _ = reply.send(());
                None
            }
            Command::Stop(reply) => {
                session.disconnect().await;
                self.session = None;
                self.set_state(AccountState::Stopped, Some("daemon stopping".into()));
                let _ = reply.send(());
                Some(Flow::Exit)
            }
        }
    }
}

/// Counts what the inbox stored, for `walink_messages_received_total`.
struct CountingInbox {
    inner: Arc<dyn InboxSink>,
    status: Arc<watch::Sender<Snapshot>>,
}

#[async_trait::async_trait]
impl InboxSink for CountingInbox {
    async fn store(&self, batch: &[IncomingMessage]) -> Result<(), String> {
        self.inner.store(batch).await?;
        let n = batch.len() as u64;
        self.status.send_modify(|s| s.messages_in += n);
        Ok(())
    }
}

/// Puts a check's verdict into the snapshot (and so into health) and the log.
fn record_network_check(status: &watch::Sender<Snapshot>, account: &str, report: &DiagnoseReport) {
    match report.failure() {
        Some(step) => {
            tracing::warn!(
                account = %account,
                event = "network_check_failed",
                step = %step.step,
                reason = %step.detail,
                "network check failed: {}{}",
                report.verdict,
                step.hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
            );
            // A connected account proves the path works; the probe's
            // failure (a blip, a proxy's connection limit) is only logged.
            let verdict = report.verdict.clone();
            status.send_modify(|s| {
                if s.state != AccountState::Connected {
                    s.network_problem = Some(verdict);
                }
            });
        }
        None => {
            tracing::info!(account = %account, event = "network_check_passed", "network check passed: {}", report.verdict);
            status.send_modify(|s| s.network_problem = None);
        }
    }
}

/// Nack codes that mean "not now" rather than "never": the message is sent
/// again later under the same id.
fn is_transient_nack(code: &str) -> bool {
    matches!(code, "408" | "429" | "500" | "503")
}

/// Ends the current connection from a task of its own. The library's
/// teardown waits on its own locks and flushes (it was seen to hang while the
/// library was already closing after a 401); the supervisor must stay free to
/// see `run` return and to answer the watchdog.
fn end_connection_soon(session: &Arc<Session>) {
    let session = session.clone();
    tokio::spawn(async move { session.end_connection().await });
}
