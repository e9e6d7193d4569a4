//! One connection attempt of the supervisor: the client, the dial through
//! the daemon's handshake gate, the keepalive pings, the library's events
//! and the commands that arrive while it runs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Flow, Supervisor};
use crate::account::command::{Command, CommandError};
use crate::account::events::{AccountEvent, Qr};
use crate::account::outbox::{self, Sender, StoreInbox, apply_status, now_ms};
use crate::account::state::{AccountState, Attempt};
use crate::account::status::Snapshot;
use crate::store::DeliveryStatus;
use crate::wa::{InboxSink, IncomingMessage, ReceiptStatus, Session, VersionStatus, WaEvent};

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

impl Supervisor {
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
    pub(super) async fn attempt(&mut self) -> Flow {
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
        // Not at once: the size known from the start (or the last
        // connection) stands until then; see `refresh_on_connect`.
        let mut size_every =
            tokio::time::interval_at(tokio::time::Instant::now() + SIZE_EVERY, SIZE_EVERY);
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
                self.refresh_on_connect();
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
                let result = self.wipe_credentials().await;
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
