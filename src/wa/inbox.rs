//! Inbound durability: the library acknowledges a received message to the
//! server only after walink has stored it, so a crash between receive and
//! store loses nothing (the server redelivers what was not acked).

use std::sync::Arc;

use whatsapp_rust::{Client, InboundDurabilityHook};

use super::events::{IncomingMessage, incoming, is_device_key_exchange};

/// Where received messages are kept. `store` must be idempotent (the same
/// message may come again after a crash) and return only once the batch is
/// durable: the server forgets a message as soon as it returns `Ok`.
#[async_trait::async_trait]
pub trait InboxSink: Send + Sync {
    async fn store(&self, batch: &[IncomingMessage]) -> Result<(), String>;
}

/// Adapts an [`InboxSink`] to whatsapp-rust's hook.
pub(crate) struct DurableInbox(pub(crate) Arc<dyn InboxSink>);

#[async_trait::async_trait]
impl InboundDurabilityHook for DurableInbox {
    async fn on_messages(
        &self,
        _client: Arc<Client>,
        batch: &[whatsapp_rust::types::durability_hook::InboundMessage],
    ) -> anyhow::Result<()> {
        let batch: Vec<IncomingMessage> = batch
            .iter()
            .filter(|m| !is_device_key_exchange(m))
            .map(incoming)
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        self.0
            .store(&batch)
            .await
            .map_err(|e| anyhow::anyhow!("storing {} received messages failed: {e}", batch.len()))
    }
}
