//! Message secrets live in `messages.db` with the account's other records
//! per message (`messages/library.rs`); this forwards the trait there.

use async_trait::async_trait;
use wacore::store::error::Result;
use wacore::store::traits::{MsgSecretEntry, MsgSecretStore};

use super::SledBackend;

#[async_trait]
impl MsgSecretStore for SledBackend {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        Ok(self
            .library("store message secrets")?
            .put_msg_secrets(entries)
            .await?)
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        Ok(self
            .library("read a message secret")?
            .msg_secret(chat, sender, msg_id)
            .await?)
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        Ok(self
            .library("delete expired message secrets")?
            .delete_expired_msg_secrets(cutoff_timestamp)
            .await?)
    }
}
