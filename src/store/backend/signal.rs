use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use wacore::store::error::Result;
use wacore::store::traits::SignalStore;

use super::{Kind, SledBackend, abort};
use crate::store::StoreError;
use crate::store::keys;
use crate::store::records::{Blob, IdentityKey, PreKey};

impl SledBackend {
    /// Whether any key of `kind` is `user` followed by `@` or `:`, i.e. an
    /// address of any device of that user.
    fn has_user_address(&self, kind: Kind, user: &str) -> std::result::Result<bool, StoreError> {
        for row in self.rows(kind, user.as_bytes()) {
            let (key, _) = row?;
            if matches!(key.get(user.len()), Some(b'@' | b':')) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn put_blobs<'a>(
        &self,
        kind: Kind,
        rows: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> std::result::Result<(), StoreError> {
        let mut batch = self.batch();
        for (key, value) in rows {
            batch.insert(key, self.encode(kind, &Blob(value.to_vec()))?);
        }
        self.apply(kind, batch)
    }

    fn get_blob(&self, kind: Kind, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get::<Blob>(kind, key)?.map(|b| b.0))
    }
}

#[async_trait]
impl SignalStore for SledBackend {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        Ok(self.put(Kind::Identities, address.as_bytes(), &IdentityKey(key))?)
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        let mut batch = self.batch();
        for (address, key) in identities {
            batch.insert(
                address.as_bytes(),
                self.encode(Kind::Identities, &IdentityKey(*key))?,
            );
        }
        Ok(self.apply(Kind::Identities, batch)?)
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        Ok(self
            .get::<IdentityKey>(Kind::Identities, address.as_bytes())?
            .map(|k| k.0))
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        Ok(self.remove(Kind::Identities, address.as_bytes())?)
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self
            .get_blob(Kind::Sessions, address.as_bytes())?
            .map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        Ok(self.put(Kind::Sessions, address.as_bytes(), &Blob(session.to_vec()))?)
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        Ok(self.put_blobs(
            Kind::Sessions,
            sessions.iter().map(|(a, s)| (a.as_bytes(), s.as_ref())),
        )?)
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        Ok(self.remove(Kind::Sessions, address.as_bytes())?)
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        Ok(self.contains(Kind::Sessions, address.as_bytes())?)
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        Ok(self.has_user_address(Kind::Sessions, user)?
            || self.has_user_address(Kind::Identities, user)?)
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        let value = PreKey {
            record: record.to_vec(),
            uploaded,
        };
        Ok(self.put(Kind::PreKeys, &keys::id(id), &value)?)
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let mut batch = self.batch();
        for (id, record) in keys {
            let value = PreKey {
                record: record.to_vec(),
                uploaded,
            };
            batch.insert(keys::id(*id), self.encode(Kind::PreKeys, &value)?);
        }
        self.apply(Kind::PreKeys, batch)?;
        // Pre-keys are about to be (or were) offered to the server: losing them
        // in a crash would make the first messages of new contacts undecryptable.
        Ok(self.flush()?)
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        Ok(self
            .get::<PreKey>(Kind::PreKeys, &keys::id(id))?
            .map(|k| Bytes::from(k.record)))
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(k) = self.get::<PreKey>(Kind::PreKeys, &keys::id(id))? {
                out.push((id, Bytes::from(k.record)));
            }
        }
        Ok(out)
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let _gate = self.writing();
        let result = self.tree(Kind::PreKeys).transaction(|tx| {
            let tx = self.in_tx(tx);
            for &id in ids {
                let key = keys::id(id);
                // Update only: a key consumed since the upload snapshot stays gone.
                let Some(bytes) = tx.get(key)? else { continue };
                let mut prekey: PreKey = abort(self.decode(Kind::PreKeys, &key, &bytes))?;
                if !prekey.uploaded {
                    prekey.uploaded = true;
                    tx.insert(key, abort(self.encode(Kind::PreKeys, &prekey))?)?;
                }
            }
            Ok(())
        });
        self.tx_result(Kind::PreKeys, result)?;
        Ok(self.flush()?)
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        Ok(self.remove(Kind::PreKeys, &keys::id(id))?)
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let last = self.rows(Kind::PreKeys, &[]).next_back().transpose()?;
        match last {
            None => Ok(0),
            Some((key, _)) => Ok(keys::parse_id(&key).ok_or_else(|| {
                self.invalid(Kind::PreKeys, &key, "pre-key id is not 4 bytes".into())
            })?),
        }
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.put(Kind::SignedPreKeys, &keys::id(id), &Blob(record.to_vec()))?;
        Ok(self.flush()?)
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        Ok(self.get_blob(Kind::SignedPreKeys, &keys::id(id))?)
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut out = Vec::new();
        for (key, blob) in self.scan::<Blob>(Kind::SignedPreKeys, &[])? {
            let id = keys::parse_id(&key).ok_or_else(|| {
                self.invalid(
                    Kind::SignedPreKeys,
                    &key,
                    "signed pre-key id is not 4 bytes".into(),
                )
            })?;
            out.push((id, blob.0));
        }
        Ok(out)
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        Ok(self.remove(Kind::SignedPreKeys, &keys::id(id))?)
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        Ok(self.put(Kind::SenderKeys, address.as_bytes(), &Blob(record.to_vec()))?)
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        Ok(self.put_blobs(
            Kind::SenderKeys,
            sender_keys.iter().map(|(a, r)| (a.as_bytes(), r.as_ref())),
        )?)
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_blob(Kind::SenderKeys, address.as_bytes())?)
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        Ok(self.remove(Kind::SenderKeys, address.as_bytes())?)
    }
}
