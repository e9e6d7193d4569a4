//! The account's durable messages seen from a connection: a sender that
//! drains the outbox while connected, status changes that reach both the
//! store and subscribers, and the inbox that stores what arrives before the
//! library acknowledges it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, broadcast};

use super::events::AccountEvent;
use super::waiters::StatusWaiters;
use crate::store::{
    DeliveryStatus, MessageStore, OutboxRecord, OutgoingMedia, Sendable, StoreError, Uploaded,
};
use crate::wa::{InboxSink, IncomingMessage, Session, SessionError, outgoing_message};

/// Messages older than this are not written again: a contact's retry
/// receipt comes within seconds of the message, and one that comes later
/// reaches the new walinkd, which answers it.
const REDELIVER_WITHIN: Duration = Duration::from_secs(10 * 60);
/// How far back in the outbox unconfirmed messages are looked for.
const REDELIVER_AMONG: usize = 500;

/// The connection ended.
struct NotConnected;

/// A message that failed this many times to go out is given up on.
const MAX_ATTEMPTS: u32 = 10;
/// Pause after a send the library refused before trying the outbox again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Moves message `id` to `status` in the store and tells subscribers and
/// the `send` calls waiting for it, when that is progress. Returns whether
/// the id belongs to the outbox.
pub(crate) async fn apply_status(
    account: &str,
    store: &MessageStore,
    events: &broadcast::Sender<AccountEvent>,
    waiters: &StatusWaiters,
    id: &str,
    status: DeliveryStatus,
    reason: Option<String>,
) -> bool {
    match store.advance(id, status, reason, now_ms()).await {
        Ok(Some(record)) => {
            tell(events, waiters, record, status);
            true
        }
        Ok(None) => matches!(store.outgoing(id).await, Ok(Some(_))),
        Err(e) => {
            status_not_recorded(account, &e);
            true
        }
    }
}

/// Tells subscribers and waiting `send` calls that `record` moved to `status`.
fn tell(
    events: &broadcast::Sender<AccountEvent>,
    waiters: &StatusWaiters,
    record: OutboxRecord,
    status: DeliveryStatus,
) {
    announce(events, &record.id, &record.to, status, record.last_error);
    waiters.resolve(&record.id, status);
}

fn status_not_recorded(account: &str, e: &StoreError) {
    tracing::error!(account = %account, error = %e, "recording a message status failed");
}

/// [`apply_status`] without waiting for the commit: the change is queued
/// now (a later one for the same id comes after it) and subscribers and
/// waiters hear of it once it is committed, when `recorded` is called too.
fn apply_status_behind(
    account: &str,
    store: &MessageStore,
    events: &broadcast::Sender<AccountEvent>,
    waiters: &Arc<StatusWaiters>,
    id: &str,
    status: DeliveryStatus,
    recorded: impl FnOnce() + Send + 'static,
) {
    let (events, waiters, name) = (events.clone(), waiters.clone(), account.to_owned());
    let queued = store.advance_behind(id, status, now_ms(), move |result| match result {
        Ok(changed) => {
            if let Some(record) = changed {
                tell(&events, &waiters, record, status);
            }
            recorded();
        }
        Err(e) => status_not_recorded(&name, &e),
    });
    if let Err(e) = queued {
        status_not_recorded(account, &e);
    }
}

pub(crate) fn announce(
    events: &broadcast::Sender<AccountEvent>,
    id: &str,
    chat: &str,
    status: DeliveryStatus,
    last_error: Option<String>,
) {
    let _ = events.send(AccountEvent::MessageStatus {
        id: id.to_owned(),
        chat: chat.to_owned(),
        status,
        reason: (status == DeliveryStatus::Failed)
            .then_some(last_error)
            .flatten(),
    });
}

/// Sends the outbox over one connection, oldest first, one message at a
/// time, so messages to the same chat arrive in the order they were queued.
/// Ends when the connection is gone; the next connection starts a new one.
pub(crate) struct Sender {
    pub(crate) account: String,
    pub(crate) store: MessageStore,
    pub(crate) session: Arc<Session>,
    pub(crate) kick: Arc<Notify>,
    pub(crate) events: broadcast::Sender<AccountEvent>,
    pub(crate) waiters: Arc<StatusWaiters>,
    /// Set until the sends an earlier walinkd left unconfirmed have been
    /// written again, once (see [`Sender::redeliver`]).
    pub(crate) redeliver: Arc<AtomicBool>,
}

impl Sender {
    pub(crate) async fn run(self) {
        if self.redeliver.load(Ordering::Acquire) {
            if self.redeliver().await.is_err() {
                return;
            }
            self.redeliver.store(false, Ordering::Release);
        }
        // Sent on this connection: not sent again on it, as a read can show
        // one `Sent` or, before its `Sent` is committed, still queued. A
        // message sent on an earlier connection (or by an earlier walinkd)
        // without an ack is sent again, under the same id.
        let mut in_flight: HashSet<String> = HashSet::new();
        // Those of them whose `Sent` is committed: once only queued messages
        // are read, a read that starts after that commit cannot return them,
        // so they leave `in_flight`, which stays as small as the sends not
        // yet recorded instead of growing with every message of the
        // connection.
        let recorded: Arc<Mutex<Vec<String>>> = Arc::default();
        // Until one pass has gone through the whole outbox, unacked messages
        // of earlier connections are read too; after that only new ones, so
        // a busy outbox is not read whole again for every message queued.
        let mut resend_unacked = true;
        // Recipients whose LID mapping is recorded: once per connection is
        // enough, where recording it after every send cost a database write
        // per message.
        let mut learned: HashSet<String> = HashSet::new();
        loop {
            if !resend_unacked {
                for id in recorded
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .drain(..)
                {
                    in_flight.remove(&id);
                }
            }
            // One read for the whole batch, each message with its context
            // and file: a trip to the database per message was most of the
            // daemon's CPU per send.
            let pending = match self.store.to_send(resend_unacked).await {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::error!(account = %self.account, error = %e, "reading the outbox failed");
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
            };
            let mut pause = false;
            for sendable in pending {
                let record = &sendable.record;
                if in_flight.contains(&record.id) {
                    continue;
                }
                let sent = self.send(&sendable).await;
                match sent {
                    Ok(_) => {
                        in_flight.insert(record.id.clone());
                        // Not awaited: waiting for a commit per message was
                        // what held one account's sends to one per commit.
                        let (recorded, id) = (recorded.clone(), record.id.clone());
                        apply_status_behind(
                            &self.account,
                            &self.store,
                            &self.events,
                            &self.waiters,
                            &record.id,
                            DeliveryStatus::Sent,
                            move || {
                                recorded
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push(id);
                            },
                        );
                        if !learned.contains(&record.to) && self.learn_mapping(&record.to).await {
                            learned.insert(record.to.clone());
                        }
                    }
                    Err(SessionError::NotConnected) => return,
                    Err(e @ (SessionError::BadRecipient(_) | SessionError::Unsendable(_))) => {
                        self.status(&record.id, DeliveryStatus::Failed, Some(e.to_string()))
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(account = %self.account, id = %record.id, error = %e, "sending failed; will retry");
                        if record.attempts + 1 >= MAX_ATTEMPTS {
                            let reason = format!("gave up after {MAX_ATTEMPTS} attempts: {e}");
                            self.status(&record.id, DeliveryStatus::Failed, Some(reason))
                                .await;
                        } else if let Err(e) = self
                            .store
                            .retry_later(&record.id, e.to_string(), now_ms())
                            .await
                        {
                            tracing::error!(account = %self.account, error = %e, "recording a failed send failed");
                        }
                        pause = true;
                        break;
                    }
                }
            }
            if pause {
                tokio::time::sleep(RETRY_AFTER).await;
            } else {
                resend_unacked = false;
                self.kick.notified().await;
            }
        }
    }

    /// Writes once more, under the same id, the recent messages the server
    /// acked that no recipient confirmed. The library answers a contact's
    /// retry receipt (it could not decrypt, say after a restore rolled the
    /// session back) on a task of its own after acking the receipt, so a
    /// walinkd killed between the two leaves that message unreadable for
    /// good: the contact does not ask twice. Run once per walinkd; a
    /// recipient that has the message already keeps one copy (ids are
    /// unique), and one that cannot decrypt it asks again, to this walinkd.
    /// Fails only when the connection is gone, for the next one to finish.
    async fn redeliver(&self) -> Result<(), NotConnected> {
        let since = now_ms().saturating_sub(REDELIVER_WITHIN.as_millis() as u64);
        let unconfirmed = match self.store.unconfirmed(REDELIVER_AMONG, since).await {
            Ok(unconfirmed) => unconfirmed,
            Err(e) => {
                tracing::error!(account = %self.account, error = %e, "reading the outbox for unconfirmed messages failed; they are not sent again");
                return Ok(());
            }
        };
        if !unconfirmed.is_empty() {
            tracing::info!(account = %self.account, messages = unconfirmed.len(), "sending recent unconfirmed messages again, under their ids");
        }
        for sendable in unconfirmed {
            match self.send(&sendable).await {
                Ok(_) => {}
                Err(SessionError::NotConnected) => return Err(NotConnected),
                Err(e) => {
                    tracing::warn!(account = %self.account, id = %sendable.record.id, error = %e, "sending an unconfirmed message again failed; it keeps its status");
                }
            }
        }
        Ok(())
    }

    /// Writes a message to the connection: a text, a reply, a reaction, or
    /// a file, uploaded first unless an earlier try already did.
    async fn send(&self, sendable: &Sendable) -> Result<String, SessionError> {
        let record = &sendable.record;
        let uploaded = match &sendable.media {
            Some(media) => Some(self.uploaded(&record.id, media).await?),
            None => None,
        };
        let file = sendable.media.as_ref().zip(uploaded.as_ref());
        let message = outgoing_message(&record.to, &record.text, sendable.context.as_ref(), file);
        self.session
            .send_message(&record.to, message, Some(record.id.clone()))
            .await
    }

    /// Where `media`'s file is: the upload an earlier try recorded, or a
    /// new one, recorded before the message naming it goes out.
    async fn uploaded(&self, id: &str, media: &OutgoingMedia) -> Result<Uploaded, SessionError> {
        if let Some(uploaded) = &media.upload {
            return Ok(uploaded.clone());
        }
        let data = match self.store.staged_file(id).await {
            Ok(Some(data)) => data,
            Ok(None) => {
                return Err(SessionError::Unsendable(
                    "its file is no longer held; send it again".into(),
                ));
            }
            Err(e) => return Err(SessionError::Send(format!("reading its file: {e}"))),
        };
        let uploaded = self
            .session
            .upload(data, media.kind, media.media_key)
            .await?;
        self.store
            .record_upload(id, uploaded.clone())
            .await
            .map_err(|e| SessionError::Send(format!("recording its upload: {e}")))?;
        tracing::info!(account = %self.account, id = %id, kind = media.kind.as_str(), bytes = media.size, "file uploaded");
        Ok(uploaded)
    }

    /// Sending to a number makes the library ask for its LID (and the
    /// reverse): the mapping it keeps joins the person's conversations.
    /// Returns whether the mapping is recorded.
    async fn learn_mapping(&self, to: &str) -> bool {
        let Some((lid, phone)) = self.session.lid_pn(to).await else {
            return false;
        };
        match crate::messages::learn(&self.store, lid, phone, now_ms()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(account = %self.account, error = %e, "recording a contact failed");
                false
            }
        }
    }

    async fn status(&self, id: &str, status: DeliveryStatus, reason: Option<String>) {
        apply_status(
            &self.account,
            &self.store,
            &self.events,
            &self.waiters,
            id,
            status,
            reason,
        )
        .await;
    }
}

/// The inbox as the library's durability hook sees it. It also announces
/// each message it stores for the first time: a redelivery after a crash is
/// stored once and announced once.
pub(crate) struct StoreInbox {
    pub(crate) store: MessageStore,
    pub(crate) events: broadcast::Sender<AccountEvent>,
    /// Fetches the files `auto_download` wants, after the batch is stored.
    pub(crate) downloads: Option<Arc<super::downloads::Downloads>>,
}

#[async_trait::async_trait]
impl InboxSink for StoreInbox {
    async fn store(&self, batch: &[IncomingMessage]) -> Result<(), String> {
        let stored = crate::messages::file(&self.store, batch, now_ms())
            .await
            .map_err(|e| e.to_string())?;
        for message in stored {
            if let Some(downloads) = &self.downloads {
                downloads.consider(&message);
            }
            let _ = self.events.send(AccountEvent::Message(Box::new(message)));
        }
        Ok(())
    }
}
