//! One task per account: connects, watches the connection, decides what to
//! do when it ends, and answers the daemon's commands. Everything an account
//! reports (state, counters, QR) comes from here, so status tells the truth.
//!
//! The loop, the account's state, the decision after a connection ends and
//! the commands between attempts live here; one connection attempt, from
//! dial to teardown, is in `connection`.

mod connection;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, broadcast, mpsc, watch};

use super::backoff::{Backoff, jitter_sample};
use super::command::{Command, CommandError, OfflineWork, Reply};
use super::downloads::Downloads;
use super::events::AccountEvent;
use super::spec::Settings;
use super::state::{AccountState, Attempt, Next, next_after};
use super::status::{Snapshot, record_network_check};
use super::waiters::StatusWaiters;
use crate::store::{MessageStore, SledBackend};
use crate::wa::{Session, WaEvent, diagnose};

/// Failed attempts in a row after which the network path is checked step by
/// step (`walink diagnose`), so health says *where* it breaks.
const DIAGNOSE_AFTER_FAILURES: u32 = 3;

/// Where the supervisor goes next.
#[derive(Debug)]
pub(super) enum Flow {
    /// Nothing to do until a command arrives.
    Idle,
    Connect,
    /// Backoff before the next attempt.
    Wait(Duration),
    Exit,
}

pub(super) struct Supervisor {
    pub(super) messages: MessageStore,
    pub(super) downloads: Option<Arc<Downloads>>,
    pub(super) waiters: Arc<StatusWaiters>,
    pub(super) kick: Arc<Notify>,
    pub(super) name: String,
    pub(super) settings: Arc<Settings>,
    pub(super) backend: Arc<SledBackend>,
    pub(super) status: Arc<watch::Sender<Snapshot>>,
    pub(super) events: broadcast::Sender<AccountEvent>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) backoff: Backoff,
    pub(super) session: Option<Arc<Session>>,
    /// The session's events; taken by the attempt that is running.
    pub(super) session_events: Option<mpsc::UnboundedReceiver<WaEvent>>,
    /// The last connection ended without anyone asking: the next login is
    /// an automatic reconnection.
    pub(super) lost_connection: bool,
    /// Until the first connection sent again what an earlier walinkd left
    /// unconfirmed.
    pub(super) redeliver: Arc<AtomicBool>,
}

impl Supervisor {
    pub(super) async fn run(mut self, start: Flow) {
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
        self.refresh_facts(true);
    }

    /// [`Self::refresh_session_facts`] when a connection is up. The size is
    /// a read of every record of the account, and measured at every connect
    /// it was most of what connecting cost the store: with 5,000 accounts,
    /// whose sessions do not fit sled's cache, it came from disk each time.
    /// So it is measured only when none is known yet (a first pairing); the
    /// connection's periodic refresh keeps it current.
    fn refresh_on_connect(&self) {
        let unknown = self.status.borrow().size_bytes == 0;
        self.refresh_facts(unknown);
    }

    fn refresh_facts(&self, size: bool) {
        let exists = self.backend.has_credentials();
        let valid = self.backend.load_device().is_ok();
        let jid = self.backend.jid();
        let size = size.then(|| self.backend.size_bytes());
        self.status.send_modify(|s| {
            s.session_exists = exists;
            s.session_valid = valid;
            if let Some(size) = size {
                s.size_bytes = size;
            }
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
                let result = self.wipe_credentials().await;
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

    async fn wipe_credentials(&mut self) -> Result<(), CommandError> {
        self.backend
            .clear()
            .await
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
                    if let Err(e) = self.backend.clear().await {
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
}
