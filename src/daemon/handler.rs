//! The daemon's answers to IPC requests: each method maps onto account
//! supervisors, and account snapshots map onto the wire types of `ipc`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::broadcast;

use super::accounts::Accounts;
use crate::account::health::{HealthInput, assess};
use crate::account::state::AccountState;
use crate::account::{AccountEvent, AccountHandle, CommandError, SentStatus, Snapshot};
use crate::ipc::protocol::{
    self as wire, AccountStatus, ActionResult, Call, Event, EventKind, HealthResult, Lagged,
    MessageStatus, PairCodeResult, QrNotification, QrResult, RpcError, SendResult, StatusResult,
    notification, unix_secs,
};
use crate::ipc::{Handler, NotificationSink};
use crate::wa::message_id_for_key;

/// How long `send` waits for the server to acknowledge a message.
const SEND_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `pair_code` waits for a pairing connection to come up.
const PAIRING_READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct DaemonHandler {
    accounts: Arc<Accounts>,
}

impl DaemonHandler {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        Self { accounts }
    }

    async fn account(&self, name: &str) -> Result<Arc<AccountHandle>, RpcError> {
        match self.accounts.get(name).await {
            Some(handle) => Ok(handle),
            None => {
                let names = self.accounts.names().await;
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                Err(RpcError::unknown_account(name, &names))
            }
        }
    }

    /// The accounts a `status`/`health`/`subscribe` call is about.
    async fn selected(&self, name: Option<&str>) -> Result<Vec<Arc<AccountHandle>>, RpcError> {
        match name {
            Some(name) => Ok(vec![self.account(name).await?]),
            None => Ok(self.accounts.all().await),
        }
    }

    async fn send(&self, p: wire::SendParams) -> Result<Value, RpcError> {
        let handle = self.account(&p.account).await?;
        // Subscribe before sending: the ack can arrive before `send` returns.
        let mut events = handle.subscribe();
        let id =
            p.id.as_deref()
                .map(|key| message_id_for_key(&p.account, key));
        let id = handle
            .send(p.to.clone(), p.text, id)
            .await
            .map_err(|e| command_error(&p.account, e))?;
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(AccountEvent::MessageStatus {
                        id: acked,
                        status,
                        reason,
                        ..
                    }) if acked == id => {
                        return match status {
                            SentStatus::Failed => Err(RpcError::send_failed(
                                reason.unwrap_or_else(|| "refused by the server".into()),
                            )),
                            other => Ok(wire_status(other)),
                        };
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(RpcError::shutting_down());
                    }
                }
            }
        };
        let status = tokio::time::timeout(SEND_ACK_TIMEOUT, wait)
            .await
            .map_err(|_| {
                RpcError::timeout(format!(
                    "message {id} was sent but the server did not acknowledge it within {}s; it may still be delivered",
                    SEND_ACK_TIMEOUT.as_secs()
                ))
            })??;
        to_value(SendResult { id, status })
    }

    async fn qr(&self, name: &str, sink: NotificationSink) -> Result<Value, RpcError> {
        let handle = self.account(name).await?;
        let mut watch = handle.watch();
        {
            let snap = watch.borrow_and_update().clone();
            if let (AccountState::Connected, Some(jid)) = (snap.state, &snap.jid) {
                return Err(RpcError::already_paired(name, jid));
            }
            if !snap.enabled {
                return Err(RpcError::invalid_state(
                    name,
                    snap.state,
                    "the account is disabled in the config; enable it and reload",
                ));
            }
            if snap.session_exists {
                return Err(RpcError::already_paired(
                    name,
                    snap.jid.as_deref().unwrap_or("?"),
                ));
            }
        }
        handle
            .initialize()
            .await
            .map_err(|e| command_error(name, e))?;
        let mut last_code: Option<String> = None;
        let mut paired = false;
        loop {
            let snap = watch.borrow_and_update().clone();
            if let Some(qr) = &snap.qr
                && last_code.as_ref() != Some(&qr.code)
            {
                last_code = Some(qr.code.clone());
                let note = QrNotification {
                    account: name.to_string(),
                    code: qr.code.clone(),
                    timeout_secs: qr.timeout.as_secs(),
                };
                if sink.notify(notification::QR, note).is_err() {
                    return Err(RpcError::invalid_request("client went away"));
                }
            }
            paired |= snap.jid.is_some();
            match snap.state {
                AccountState::Connected if snap.jid.is_some() => {
                    return to_value(QrResult {
                        jid: snap.jid.unwrap_or_default(),
                    });
                }
                AccountState::Stopped
                | AccountState::LoggedOut
                | AccountState::Replaced
                | AccountState::Failed
                    if last_code.is_some() || paired =>
                {
                    return Err(RpcError::invalid_state(
                        name,
                        snap.state,
                        format!(
                            "pairing ended: {}; run `walink qr {name}` again",
                            snap.state_reason.as_deref().unwrap_or("no reason given")
                        ),
                    ));
                }
                _ => {}
            }
            if watch.changed().await.is_err() {
                return Err(RpcError::shutting_down());
            }
        }
    }

    async fn pair_code(&self, p: wire::PairCodeParams) -> Result<Value, RpcError> {
        let handle = self.account(&p.account).await?;
        let snap = handle.snapshot();
        if snap.session_exists {
            return Err(RpcError::already_paired(
                &p.account,
                snap.jid.as_deref().unwrap_or("?"),
            ));
        }
        let mut watch = handle.watch();
        if snap.state != AccountState::WaitingForPairing {
            handle
                .initialize()
                .await
                .map_err(|e| command_error(&p.account, e))?;
            let ready = watch.wait_for(|s| s.state == AccountState::WaitingForPairing);
            match tokio::time::timeout(PAIRING_READY_TIMEOUT, ready).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(RpcError::shutting_down()),
                Err(_) => {
                    return Err(RpcError::timeout(format!(
                        "no pairing connection within {}s; check `walink status {}`",
                        PAIRING_READY_TIMEOUT.as_secs(),
                        p.account
                    )));
                }
            }
        }
        let code = handle
            .pair_code(p.phone)
            .await
            .map_err(|e| command_error(&p.account, e))?;
        to_value(PairCodeResult { code })
    }

    async fn subscribe(
        &self,
        name: Option<&str>,
        sink: NotificationSink,
    ) -> Result<Value, RpcError> {
        let handles = self.selected(name).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Event, u64>>(256);
        let mut forwarders = tokio::task::JoinSet::new();
        for handle in handles {
            let mut events = handle.subscribe();
            let account = handle.spec().name.clone();
            let tx = tx.clone();
            forwarders.spawn(async move {
                loop {
                    let item = match events.recv().await {
                        Ok(event) => Ok(wire_event(&account, event)),
                        Err(broadcast::error::RecvError::Lagged(n)) => Err(n),
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        loop {
            tokio::select! {
                _ = sink.closed() => return Ok(Value::Null),
                item = rx.recv() => {
                    let sent = match item {
                        Some(Ok(event)) => sink.notify(notification::EVENT, event),
                        Some(Err(missed)) => sink.notify(notification::LAGGED, Lagged { missed }),
                        None => return Err(RpcError::shutting_down()),
                    };
                    if sent.is_err() {
                        return Ok(Value::Null);
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Handler for DaemonHandler {
    async fn handle(
        &self,
        method: &str,
        params: Value,
        sink: NotificationSink,
    ) -> Result<Value, RpcError> {
        match Call::parse(method, params)? {
            Call::Status(f) => {
                let accounts = self.selected(f.account.as_deref()).await?;
                let accounts = accounts.iter().map(|h| status_of(&h.snapshot())).collect();
                to_value(StatusResult { accounts })
            }
            Call::Health(f) => {
                let accounts = self.selected(f.account.as_deref()).await?;
                let accounts = accounts
                    .iter()
                    .map(|h| (&status_of(&h.snapshot())).into())
                    .collect();
                to_value(HealthResult::new(accounts))
            }
            Call::Initialize(p) => {
                let handle = self.account(&p.account).await?;
                let snap = handle.snapshot();
                if !snap.enabled {
                    return Err(RpcError::invalid_state(
                        &p.account,
                        snap.state,
                        "the account is disabled in the config; enable it and reload",
                    ));
                }
                let state = handle
                    .initialize()
                    .await
                    .map_err(|e| command_error(&p.account, e))?;
                action(&p.account, state)
            }
            Call::Reconnect(p) => {
                let handle = self.account(&p.account).await?;
                let state = handle
                    .reconnect()
                    .await
                    .map_err(|e| command_error(&p.account, e))?;
                action(&p.account, state)
            }
            Call::Restart(p) => {
                let handle = self.account(&p.account).await?;
                let state = handle
                    .restart()
                    .await
                    .map_err(|e| command_error(&p.account, e))?;
                action(&p.account, state)
            }
            Call::ClearSession(p) => {
                let handle = self.account(&p.account).await?;
                let state = handle
                    .clear_session()
                    .await
                    .map_err(|e| command_error(&p.account, e))?;
                action(&p.account, state)
            }
            Call::Send(p) => self.send(p).await,
            Call::Qr(p) => self.qr(&p.account, sink).await,
            Call::PairCode(p) => self.pair_code(p).await,
            Call::Subscribe(f) => self.subscribe(f.account.as_deref(), sink).await,
        }
    }
}

fn to_value(v: impl serde::Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(RpcError::internal)
}

fn action(account: &str, state: AccountState) -> Result<Value, RpcError> {
    to_value(ActionResult {
        account: account.to_string(),
        state,
    })
}

fn command_error(account: &str, e: CommandError) -> RpcError {
    match e {
        CommandError::NotConnected { state, .. } => RpcError::not_connected(account, state),
        CommandError::InvalidState { state, what, .. } => {
            RpcError::invalid_state(account, state, what)
        }
        CommandError::Rejected(why) => RpcError::send_failed(why),
        CommandError::Store(why) => RpcError::storage(why),
        CommandError::Gone => RpcError::shutting_down(),
    }
}

fn secs(t: Option<SystemTime>) -> Option<u64> {
    t.map(unix_secs)
}

/// An account snapshot as the wire shows it, with its health assessed now.
pub fn status_of(s: &Snapshot) -> AccountStatus {
    let health = assess(&HealthInput {
        state: s.state,
        enabled: s.enabled,
        failures: s.failures as usize,
        session_exists: s.session_exists,
        session_valid: s.session_valid,
        keepalive_rtt_ms: s.keepalive_rtt_ms,
        state_reason: s.state_reason.as_deref(),
    });
    let uptime = s
        .connected_since
        .and_then(|since| SystemTime::now().duration_since(since).ok())
        .map(|d| d.as_secs());
    AccountStatus {
        name: s.name.clone(),
        state: s.state,
        jid: s.jid.clone(),
        health: wire::Health {
            level: health.level,
            reasons: health.reasons,
        },
        connected_since: secs(s.connected_since),
        uptime_secs: uptime,
        reconnect_attempts: s.failures,
        automatic_reconnections: s.automatic_reconnections,
        last_disconnect: s
            .last_disconnect
            .as_ref()
            .map(|(reason, at)| wire::Disconnect {
                reason: reason.clone(),
                at: unix_secs(*at),
            }),
        next_retry_at: secs(s.next_retry_at),
        last_keepalive_rtt_ms: s.keepalive_rtt_ms,
        session: wire::SessionInfo {
            exists: s.session_exists,
            valid: s.session_valid,
            size_bytes: s.size_bytes,
        },
        recommendations: health.recommendations,
    }
}

fn wire_status(s: SentStatus) -> MessageStatus {
    match s {
        SentStatus::ServerAck => MessageStatus::ServerAck,
        SentStatus::Delivered => MessageStatus::Delivered,
        SentStatus::Read => MessageStatus::Read,
        SentStatus::Failed => MessageStatus::Failed,
    }
}

fn wire_event(account: &str, event: AccountEvent) -> Event {
    let kind = match event {
        AccountEvent::StateChanged {
            state,
            reason,
            attempt,
            next_retry_at,
        } => EventKind::StateChanged {
            state,
            reason,
            attempt,
            next_retry_at: secs(next_retry_at),
        },
        AccountEvent::Qr(qr) => EventKind::Qr {
            code: qr.code,
            timeout_secs: qr.timeout.as_secs(),
        },
        AccountEvent::Paired { jid } => EventKind::Paired { jid },
        AccountEvent::Message(m) => EventKind::MessageReceived {
            id: m.id,
            chat: m.chat,
            sender: m.sender,
            timestamp: m.timestamp.max(0) as u64,
            text: m.text,
            description: m.description,
        },
        AccountEvent::MessageStatus {
            id,
            chat,
            status,
            reason,
        } => EventKind::MessageStatus {
            id,
            chat,
            status: wire_status(status),
            reason,
        },
    };
    Event {
        account: account.to_string(),
        at: unix_secs(SystemTime::now()),
        kind,
    }
}
