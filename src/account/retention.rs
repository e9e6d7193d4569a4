//! The task that keeps an account's message history within its retention
//! limit, beside the supervisor so pruning never holds up the connection.

use std::time::Duration;

use super::outbox::now_ms;
use crate::store::{MessageStore, Retention};

/// How often old messages are pruned (accounts with a retention limit).
const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// Applies the account's retention now and then (in the message
/// database's writer, off the async workers).
pub(super) async fn prune_forever(account: String, messages: MessageStore, retention: Retention) {
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
