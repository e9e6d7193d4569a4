//! The daemon's answers to IPC requests: each method maps onto account
//! supervisors, and account snapshots map onto the wire types of `ipc`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::broadcast;

use super::accounts::Accounts;
use super::errors::command_error;
use super::wire::{secs, status_of, wire_status};
use crate::account::state::AccountState;
use crate::account::{AccountEvent, AccountHandle, Context, DeliveryStatus, Snapshot};
use crate::ipc::protocol::{
    self as wire, ActionResult, Call, Event, EventKind, HealthResult, Lagged, PairCodeResult,
    QrNotification, QrResult, QrWaiting, Reply, RpcError, SendResult, StatusResult, notification,
    to_result, unix_secs,
};
use crate::ipc::{Handler, NotificationSink};

/// How long `send` waits for the server to acknowledge a message.
const SEND_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Most messages `outbox --all` lists.
const OUTBOX_ALL_LIMIT: usize = 1000;

pub struct DaemonHandler {
    accounts: Arc<Accounts>,
    uploads: super::backups::Uploads,
    files: super::files::Transfers,
    fetches: super::fetches::Fetches,
}

impl DaemonHandler {
    /// Files fetched for clients are held in `state_dir` while they go out.
    pub fn new(accounts: Arc<Accounts>, state_dir: &std::path::Path) -> Self {
        Self {
            accounts,
            uploads: Default::default(),
            files: Default::default(),
            fetches: super::fetches::Fetches::new(state_dir),
        }
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

    /// A reaction goes to the conversation of the message it reacts to.
    async fn react(&self, p: wire::ReactParams) -> Result<Reply, RpcError> {
        let handle = self.account(&p.account).await?;
        let chat = handle
            .messages()
            .chat_of(&p.id)
            .await
            .map_err(RpcError::storage)?
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "account {} has no message {}; react to an id `walink messages {}` lists",
                    p.account, p.id, p.account
                ))
            })?;
        let send = wire::SendParams {
            account: p.account,
            to: chat,
            text: p.emoji,
            id: None,
            wait: p.wait,
            reply_to: None,
            file: None,
        };
        self.send(send, Some(p.id)).await
    }

    /// An edit or a deletion for everyone goes to the conversation of the
    /// message it changes, which this account must have sent.
    async fn change(
        &self,
        account: String,
        id: String,
        text: String,
        wait: bool,
        edit: bool,
    ) -> Result<Reply, RpcError> {
        let handle = self.account(&account).await?;
        let what = if edit { "edit" } else { "delete" };
        let (chat, revoked) = handle
            .messages()
            .sent_chat_of(&id)
            .await
            .map_err(RpcError::storage)?
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "account {account} sent no message {id}; {what} only a message `walink messages {account}` shows with from_me"
                ))
            })?;
        if revoked {
            return Err(RpcError::invalid_params(format!(
                "message {id} was deleted for everyone; there is nothing left to {what}"
            )));
        }
        let send = wire::SendParams {
            account,
            to: chat,
            text,
            id: None,
            wait,
            reply_to: None,
            file: None,
        };
        let context = if edit {
            Context {
                edit_of: Some(id),
                ..Context::default()
            }
        } else {
            Context {
                revoke_of: Some(id),
                ..Context::default()
            }
        };
        self.enqueue(send, context).await
    }

    async fn send(&self, p: wire::SendParams, react_to: Option<String>) -> Result<Reply, RpcError> {
        let media = match &p.file {
            Some(file) => Some(self.file_draft(&p.account, file, &p.text).await?),
            None => None,
        };
        let context = Context {
            reply_to: p.reply_to.clone(),
            react_to,
            media,
            ..Context::default()
        };
        self.enqueue(p, context).await
    }

    /// Queues `p` with what `context` says of it, and answers as `send` does.
    async fn enqueue(&self, p: wire::SendParams, context: Context) -> Result<Reply, RpcError> {
        let handle = self.account(&p.account).await?;
        let snap = handle.snapshot();
        if p.wait && !snap.session_exists {
            // Waiting could only time out: nothing is sent before pairing.
            return Err(RpcError::not_connected(&p.account, snap.state));
        }
        let id = handle.message_id(p.id.as_deref());
        // Registered before the enqueue: a status recorded after the
        // enqueue's commit reaches the waiter, and one recorded before it
        // is in the record the enqueue returns, so nothing is read again.
        let mut waiter = p.wait.then(|| handle.waiters().register(&id));
        let enqueued = handle
            .send(id.clone(), p.to.clone(), p.text, p.id, context)
            .await
            .map_err(|e| command_error(&p.account, e))?;
        let record = enqueued.record;
        if record.status == DeliveryStatus::Failed {
            return Err(RpcError::send_failed(format!(
                "message {id} failed earlier: {}",
                record.last_error.as_deref().unwrap_or("no reason recorded")
            )));
        }
        let Some(waiter) = waiter.as_mut().filter(|_| record.status.is_pending()) else {
            return to_result(&SendResult {
                id,
                status: wire_status(record.status),
            });
        };
        let messages = handle.messages().clone();
        let wait = async {
            let status = waiter.wait().await.ok_or_else(RpcError::shutting_down)?;
            match status {
                DeliveryStatus::Failed => {
                    let reason = messages
                        .outgoing(&id)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|r| r.last_error)
                        .unwrap_or_else(|| "refused by the server".into());
                    Err(RpcError::send_failed(reason))
                }
                done => Ok(wire_status(done)),
            }
        };
        let status = match tokio::time::timeout(SEND_ACK_TIMEOUT, wait).await {
            Ok(result) => result?,
            Err(_) => {
                let now = messages.outgoing(&id).await.ok().flatten();
                let (status, attempts) = now
                    .as_ref()
                    .map_or((DeliveryStatus::Queued, 0), |r| (r.status, r.attempts));
                let state = handle.snapshot().state;
                return Err(RpcError::timeout(format!(
                    "message {id} is {} (account {} is {state}, {attempts} attempts) and the server has not acknowledged it within {}s; it stays in the outbox and goes out when the account is connected: see `walink outbox {}`",
                    wire_status(status),
                    p.account,
                    SEND_ACK_TIMEOUT.as_secs(),
                    p.account,
                )));
            }
        };
        to_result(&SendResult { id, status })
    }

    /// The file a `send` names, taken from its transfer and described.
    async fn file_draft(
        &self,
        account: &str,
        file: &wire::SendFile,
        caption: &str,
    ) -> Result<crate::store::MediaDraft, RpcError> {
        let data = self.files.take(account, &file.transfer)?;
        let (name, as_document) = (file.name.clone(), file.as_document);
        let draft = tokio::task::spawn_blocking(move || {
            crate::messages::outgoing_file::draft(&name, data, as_document)
        })
        .await
        .map_err(RpcError::internal)?;
        if draft.media.kind == crate::store::MediaKind::Audio && !caption.trim().is_empty() {
            return Err(RpcError::invalid_message(
                "an audio message carries no caption; leave the caption out, or send the file as a document",
            ));
        }
        Ok(draft)
    }

    async fn outbox(&self, p: wire::OutboxParams) -> Result<Reply, RpcError> {
        let handle = self.account(&p.account).await?;
        let store = handle.messages();
        let records = if p.all {
            store.recent_outgoing(OUTBOX_ALL_LIMIT).await
        } else {
            match (store.pending().await, store.failed().await) {
                (Ok(mut pending), Ok(failed)) => {
                    pending.extend(failed);
                    pending.sort_by_key(|r| r.seq);
                    Ok(pending)
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        .map_err(RpcError::storage)?;
        let messages = records
            .into_iter()
            .map(|r| wire::OutboxMessage {
                id: r.id,
                to: r.to,
                text: r.text,
                status: wire_status(r.status),
                created_at: r.created_at / 1000,
                updated_at: r.updated_at / 1000,
                attempts: r.attempts,
                last_error: r.last_error,
            })
            .collect();
        to_result(&wire::OutboxResult { messages })
    }

    async fn qr(&self, name: &str, sink: NotificationSink) -> Result<Reply, RpcError> {
        let handle = self.account(name).await?;
        let mut watch = handle.watch();
        {
            let snap = watch.borrow_and_update().clone();
            if let (AccountState::Connected, Some(jid)) = (snap.state, &snap.jid) {
                return Err(RpcError::already_paired(name, jid));
            }
            if let Some(why) = cannot_show_qr(name, &snap) {
                return Err(RpcError::invalid_state(name, snap.state, why));
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
        let mut last_waiting: Option<QrWaiting> = None;
        let mut paired = false;
        loop {
            let snap = watch.borrow_and_update().clone();
            if snap.qr.is_none() {
                say_why_waiting(name, &snap, &mut last_waiting, &sink)?;
            }
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
                    return to_result(&QrResult {
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

    async fn pair_code(
        &self,
        p: wire::PairCodeParams,
        sink: NotificationSink,
    ) -> Result<Reply, RpcError> {
        let handle = self.account(&p.account).await?;
        let snap = handle.snapshot();
        if let Some(why) = cannot_show_qr(&p.account, &snap) {
            return Err(RpcError::invalid_state(&p.account, snap.state, why));
        }
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
            let mut last_waiting: Option<QrWaiting> = None;
            loop {
                let now = watch.borrow_and_update().clone();
                if now.state == AccountState::WaitingForPairing {
                    break;
                }
                if let Some(why) = cannot_show_qr(&p.account, &now) {
                    return Err(RpcError::invalid_state(&p.account, now.state, why));
                }
                if now.state == AccountState::Failed {
                    return Err(RpcError::invalid_state(
                        &p.account,
                        now.state,
                        now.state_reason
                            .unwrap_or_else(|| "the account failed".to_owned()),
                    ));
                }
                say_why_waiting(&p.account, &now, &mut last_waiting, &sink)?;
                if watch.changed().await.is_err() {
                    return Err(RpcError::shutting_down());
                }
            }
        }
        let code = handle
            .pair_code(p.phone)
            .await
            .map_err(|e| command_error(&p.account, e))?;
        to_result(&PairCodeResult { code })
    }

    async fn subscribe(
        &self,
        name: Option<&str>,
        sink: NotificationSink,
    ) -> Result<Reply, RpcError> {
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
                _ = sink.closed() => return to_result(&()),
                item = rx.recv() => {
                    let sent = match item {
                        Some(Ok(event)) => sink.notify(notification::EVENT, event),
                        Some(Err(missed)) => sink.notify(notification::LAGGED, Lagged { missed }),
                        None => return Err(RpcError::shutting_down()),
                    };
                    if sent.is_err() {
                        return to_result(&());
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
    ) -> Result<Reply, RpcError> {
        match Call::parse(method, params)? {
            Call::Status(f) => {
                let accounts = self.selected(f.account.as_deref()).await?;
                let accounts = accounts
                    .iter()
                    .map(|h| {
                        let mut status = status_of(&h.snapshot());
                        let counts = h.messages().counts();
                        status.outbox = wire::OutboxCounts {
                            queued: counts.queued,
                            failed: counts.failed,
                        };
                        status
                    })
                    .collect();
                to_result(&StatusResult { accounts })
            }
            Call::Health(f) => {
                let accounts = self.selected(f.account.as_deref()).await?;
                let accounts = accounts
                    .iter()
                    .map(|h| (&status_of(&h.snapshot())).into())
                    .collect();
                to_result(&HealthResult::new(accounts))
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
            Call::ClearSession(p) => super::backups::clear_session(&self.accounts, p).await,
            Call::Backup(p) => super::backups::backup(&self.accounts, &p.account).await,
            Call::Backups(p) => super::backups::list(&self.accounts, &p.account).await,
            Call::Restore(p) => super::backups::restore(&self.accounts, p).await,
            Call::Export(p) => super::backups::export(&self.accounts, &p.account).await,
            Call::Import(p) => super::backups::import(&self.accounts, &self.uploads, p).await,
            Call::Send(p) => self.send(p, None).await,
            Call::SendFilePart(p) => {
                self.account(&p.account).await?;
                to_result(&self.files.part(p, self.accounts.send_file_max_bytes())?)
            }
            Call::React(p) => self.react(p).await,
            Call::Media(p) => {
                super::conversations::media(&*self.account(&p.account).await?, p).await
            }
            Call::MediaPart(p) => {
                let handle = self.account(&p.account).await?;
                super::conversations::media_part(&handle, &self.fetches, p).await
            }
            Call::Edit(p) => self.change(p.account, p.id, p.text, p.wait, true).await,
            Call::Delete(p) => {
                self.change(p.account, p.id, String::new(), p.wait, false)
                    .await
            }
            Call::Qr(p) => self.qr(&p.account, sink).await,
            Call::PairCode(p) => self.pair_code(p, sink).await,
            Call::Subscribe(f) => self.subscribe(f.account.as_deref(), sink).await,
            Call::Outbox(p) => self.outbox(p).await,
            Call::Messages(p) => {
                super::conversations::messages(&*self.account(&p.account).await?, p).await
            }
            Call::Chats(p) => super::conversations::chats(&*self.account(&p.account).await?).await,
            Call::Groups(p) => {
                super::conversations::groups(&*self.account(&p.account).await?, &p.account).await
            }
            Call::Contacts(p) => {
                super::conversations::contacts(&*self.account(&p.account).await?, p).await
            }
            Call::Diagnose(f) => {
                let report = match f.account.as_deref() {
                    Some(name) => {
                        let handle = self.account(name).await?;
                        let report = crate::wa::diagnose(&handle.connection(), Some(name)).await;
                        handle.record_network_check(&report);
                        report
                    }
                    None => crate::wa::diagnose(&self.accounts.connection().await, None).await,
                };
                to_result(&report)
            }
        }
    }
}

fn action(account: &str, state: AccountState) -> Result<Reply, RpcError> {
    to_result(&ActionResult {
        account: account.to_string(),
        state,
    })
}

/// While an account that should show a QR or a pair code cannot reach the
/// server, tells the client its state and reason, once per change, instead
/// of leaving the user in front of a blank terminal.
fn say_why_waiting(
    name: &str,
    snap: &Snapshot,
    last: &mut Option<QrWaiting>,
    sink: &NotificationSink,
) -> Result<(), RpcError> {
    if !matches!(
        snap.state,
        AccountState::Connecting | AccountState::Reconnecting
    ) || snap.state_reason.is_none()
    {
        return Ok(());
    }
    let waiting = QrWaiting {
        account: name.to_string(),
        state: snap.state,
        reason: snap.state_reason.clone(),
        next_retry_at: secs(snap.next_retry_at),
    };
    if last.as_ref() != Some(&waiting) {
        if sink.notify(notification::QR_WAITING, &waiting).is_err() {
            return Err(RpcError::invalid_request("client went away"));
        }
        *last = Some(waiting);
    }
    Ok(())
}

/// Why an account cannot show a QR now, if it cannot.
fn cannot_show_qr(name: &str, snap: &Snapshot) -> Option<String> {
    if !snap.enabled {
        return Some("the account is disabled in the config; enable it and reload".into());
    }
    match snap.state {
        AccountState::LoggedOut => Some(format!(
            "{}; run `walink initialize {name}` to link it again, then `walink qr {name}`",
            snap.state_reason
                .as_deref()
                .unwrap_or("logged out by the server")
        )),
        AccountState::Replaced => Some(format!(
            "another client took over the session; run `walink reconnect {name}` to take it back, or `walink clear-session {name}` to link it anew"
        )),
        _ => None,
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
            message: Box::new(super::conversations::wire_message(*m)),
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
        AccountEvent::BackupDone {
            generation,
            size_bytes,
        } => EventKind::BackupDone {
            generation,
            size_bytes,
        },
        AccountEvent::RestoredFromBackup { generation } => {
            EventKind::RestoredFromBackup { generation }
        }
    };
    Event {
        account: account.to_string(),
        at: unix_secs(SystemTime::now()),
        kind,
    }
}
