//! `send` calls waiting for their message's server ack, keyed by message id.
//!
//! A waiting `send` used to watch the account's event broadcast, so every
//! status change of every message woke every waiting call: with N sends in
//! flight that is N wakeups per change, most of the daemon's CPU under load.
//! Here a status change wakes only the calls waiting for that message.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::store::DeliveryStatus;

#[derive(Debug, Default)]
pub struct StatusWaiters {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Vec<oneshot::Sender<DeliveryStatus>>>,
    /// The supervisor is gone: nothing will ever resolve a waiter.
    closed: bool,
}

/// One call's wait for message `id` to leave the outbox. Dropping it (the
/// call timed out or its client left) forgets it.
#[derive(Debug)]
pub struct StatusWaiter<'a> {
    waiters: &'a StatusWaiters,
    id: String,
    rx: oneshot::Receiver<DeliveryStatus>,
}

impl StatusWaiter<'_> {
    /// The first status past `Sent` (server ack, receipt or failure), or
    /// `None` when the account's supervisor ended first.
    pub async fn wait(&mut self) -> Option<DeliveryStatus> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for StatusWaiter<'_> {
    fn drop(&mut self) {
        self.rx.close();
        let mut inner = self.waiters.lock();
        if let Some(list) = inner.by_id.get_mut(&self.id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                inner.by_id.remove(&self.id);
            }
        }
    }
}

impl StatusWaiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts waiting for message `id`. Register before reading the store:
    /// a change recorded after that read is then sure to reach the waiter.
    pub fn register(&self, id: &str) -> StatusWaiter<'_> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        if !inner.closed {
            inner.by_id.entry(id.to_owned()).or_default().push(tx);
        }
        StatusWaiter {
            waiters: self,
            id: id.to_owned(),
            rx,
        }
    }

    /// Message `id` is now `status` (already recorded in the store).
    pub fn resolve(&self, id: &str, status: DeliveryStatus) {
        if status.is_pending() {
            return;
        }
        let Some(list) = self.lock().by_id.remove(id) else {
            return;
        };
        for tx in list {
            let _ = tx.send(status);
        }
    }

    /// The supervisor ended: every current and future waiter gets `None`.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.by_id.clear();
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().by_id.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_settled_status_wakes_the_waiters_of_that_message() {
        let waiters = StatusWaiters::default();
        let mut a = waiters.register("A");
        let mut a_again = waiters.register("A");
        let b = waiters.register("B");
        waiters.resolve("A", DeliveryStatus::Sent);
        assert_eq!(waiters.waiting(), 3, "Sent is still pending: nobody wakes");
        waiters.resolve("A", DeliveryStatus::ServerAck);
        assert_eq!(a.wait().await, Some(DeliveryStatus::ServerAck));
        assert_eq!(a_again.wait().await, Some(DeliveryStatus::ServerAck));
        assert_eq!(waiters.waiting(), 1, "B still waits");
        drop(b);
        assert_eq!(waiters.waiting(), 0, "a dropped waiter is forgotten");
    }

    #[tokio::test]
    async fn closing_ends_current_and_later_waits() {
        let waiters = StatusWaiters::default();
        let mut before = waiters.register("A");
        waiters.close();
        let mut after = waiters.register("B");
        assert_eq!(before.wait().await, None);
        assert_eq!(after.wait().await, None);
    }
}
