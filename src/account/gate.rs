//! Bounds the connection attempts in flight across all accounts.
//!
//! At a cold start, or when the server drops every connection at once,
//! thousands of supervisors want to dial in the same millisecond. Each
//! handshake costs both sides CPU (Noise, the login's key exchange), and a
//! server flooded with them answers all of them late, so some time out
//! and retry, which floods it again. The gate lets a bounded number through
//! at a time; an attempt that finds it full first waits a random part of a
//! spread, so the queue forms in no particular order and the server sees a
//! steady trickle, not a herd. One account reconnecting alone passes at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::backoff::jitter_sample;

/// The daemon's bound on concurrent handshakes, shared by every account.
#[derive(Debug, Clone)]
pub struct HandshakeGate {
    permits: usize,
    spread: Duration,
    semaphore: Arc<Semaphore>,
}

/// Two gates are the same setting when they let as many through: a reload
/// that changes nothing keeps the running one.
impl PartialEq for HandshakeGate {
    fn eq(&self, other: &Self) -> bool {
        self.permits == other.permits && self.spread == other.spread
    }
}

impl HandshakeGate {
    /// `permits` attempts at once (at least one); a full gate is queued for
    /// after a random wait in `[0, spread)`.
    pub fn new(permits: usize, spread: Duration) -> Self {
        let permits = permits.max(1);
        Self {
            permits,
            spread,
            semaphore: Arc::new(Semaphore::new(permits)),
        }
    }

    /// Waits for a place; the attempt holds it until it is logged in or has
    /// failed.
    pub async fn enter(&self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return permit;
        }
        tokio::time::sleep(self.spread.mul_f64(jitter_sample())).await;
        self.semaphore
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the gate's semaphore is never closed"))
    }

    /// Attempts holding a place right now.
    pub fn in_flight(&self) -> usize {
        self.permits - self.semaphore.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_more_than_the_bound_pass_and_a_freed_place_lets_the_next_in() {
        let gate = HandshakeGate::new(2, Duration::from_millis(5));
        let a = gate.enter().await;
        let _b = gate.enter().await;
        assert_eq!(gate.in_flight(), 2);
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move {
                let _c = gate.enter().await;
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a third waits while two are in");
        drop(a);
        waiting.await.unwrap();
        assert_eq!(gate.in_flight(), 1);
    }

    #[test]
    fn gates_compare_by_their_setting() {
        let spread = Duration::from_millis(200);
        assert_eq!(HandshakeGate::new(8, spread), HandshakeGate::new(8, spread));
        assert_ne!(HandshakeGate::new(8, spread), HandshakeGate::new(9, spread));
    }
}
