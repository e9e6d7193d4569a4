use async_trait::async_trait;
use sled::Transactional;
use wacore::store::error::Result;
use wacore::store::traits::{
    MsgSecretEntry, MsgSecretStore, merge_msg_secret_expiry, merge_msg_secret_message_ts,
};

use super::{Kind, SledBackend, abort};
use crate::store::keys;
use crate::store::records::{Marker, MsgSecret};

fn row_key(chat: &str, sender: &str, msg_id: &str) -> Vec<u8> {
    keys::composite(&[chat.as_bytes(), sender.as_bytes(), msg_id.as_bytes()])
}

/// Index rows exist only for rows with a deadline (`expires_at != 0`), keyed
/// `deadline ++ row key`, so pruning reads only what has expired.
fn expiry_key(expires_at: i64, row_key: &[u8]) -> Vec<u8> {
    keys::timed(expires_at, row_key)
}

#[async_trait]
impl MsgSecretStore for SledBackend {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let marker = self.encode(Kind::MsgSecretExpiry, &Marker)?;
        let _gate = self.writing();
        let result = (
            self.tree(Kind::MsgSecrets),
            self.tree(Kind::MsgSecretExpiry),
        )
            .transaction(|(rows, expiry)| {
                for entry in &entries {
                    let key = row_key(&entry.chat, &entry.sender, &entry.msg_id);
                    let (expires_at, message_ts) = match rows.get(&key)? {
                        Some(old) => {
                            let old: MsgSecret = abort(self.decode(Kind::MsgSecrets, &key, &old))?;
                            if old.expires_at != 0 {
                                expiry.remove(expiry_key(old.expires_at, &key))?;
                            }
                            (
                                merge_msg_secret_expiry(old.expires_at, entry.expires_at),
                                merge_msg_secret_message_ts(old.message_ts, entry.message_ts),
                            )
                        }
                        None => (entry.expires_at, entry.message_ts),
                    };
                    let row = MsgSecret {
                        secret: entry.secret,
                        expires_at,
                        message_ts,
                    };
                    rows.insert(key.as_slice(), abort(self.encode(Kind::MsgSecrets, &row))?)?;
                    if expires_at != 0 {
                        expiry.insert(expiry_key(expires_at, &key), marker.clone())?;
                    }
                }
                Ok(())
            });
        self.tx_result(Kind::MsgSecrets, result)?;
        Ok(entries.len())
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
            .get::<MsgSecret>(Kind::MsgSecrets, &row_key(chat, sender, msg_id))?
            .map(|row| (row.secret.to_vec(), row.message_ts)))
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let cutoff = keys::timestamp(cutoff_timestamp);
        let mut expired = Vec::new();
        for key in self.tree(Kind::MsgSecretExpiry).iter().keys() {
            let key = key.map_err(self.sled_err(Kind::MsgSecretExpiry, "scan"))?;
            // Deadline at or before the cutoff is expired.
            if key.len() < 8 || key[..8] > cutoff[..] {
                break;
            }
            expired.push(key);
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let _gate = self.writing();
        let result = (
            self.tree(Kind::MsgSecrets),
            self.tree(Kind::MsgSecretExpiry),
        )
            .transaction(|(rows, expiry)| {
                let mut removed = 0u32;
                for index_key in &expired {
                    // A row re-put since the scan has a new index entry and stays.
                    let still_indexed = expiry.remove(index_key)?.is_some();
                    if still_indexed && rows.remove(keys::timed_row(index_key))?.is_some() {
                        removed += 1;
                    }
                }
                Ok(removed)
            });
        Ok(self.tx_result(Kind::MsgSecrets, result)?)
    }
}
