use async_trait::async_trait;
use sled::Transactional;
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::error::Result;
use wacore::store::traits::{AppStateSyncKey, AppSyncStore};

use super::{Kind, SledBackend, meta};
use crate::store::keys;
use crate::store::records::{AppStateVersion, Blob, SyncKey};

#[async_trait]
impl AppSyncStore for SledBackend {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        Ok(self.get::<SyncKey>(Kind::SyncKeys, key_id)?.map(Into::into))
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        let value = self.encode(Kind::SyncKeys, &SyncKey::from(&key))?;
        let latest = self.encode(Kind::Meta, &Blob(key_id.to_vec()))?;
        let gate = self.writing();
        let result =
            (self.tree(Kind::SyncKeys), self.tree(Kind::Meta)).transaction(|(keys_tx, meta_tx)| {
                self.in_tx(keys_tx).insert(key_id, value.clone())?;
                self.in_tx(meta_tx)
                    .insert(meta::LATEST_SYNC_KEY_ID, latest.clone())?;
                Ok(())
            });
        self.tx_result(Kind::SyncKeys, result)?;
        drop(gate);
        // App-state keys arrive once from the phone; losing one to a crash
        // leaves a collection undecryptable until the phone resends it.
        Ok(self.flush()?)
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        match self.get::<AppStateVersion>(Kind::AppStateVersions, name.as_bytes())? {
            None => Ok(HashState::default()),
            Some(v) => Ok(v
                .into_hash_state()
                .map_err(|reason| self.invalid(Kind::AppStateVersions, name.as_bytes(), reason))?),
        }
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        Ok(self.put(
            Kind::AppStateVersions,
            name.as_bytes(),
            &AppStateVersion::from(&state),
        )?)
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        _version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        let mut batch = self.batch();
        for m in mutations {
            batch.insert(
                keys::composite(&[name.as_bytes(), &m.index_mac]),
                self.encode(Kind::MutationMacs, &Blob(m.value_mac.clone()))?,
            );
        }
        Ok(self.apply(Kind::MutationMacs, batch)?)
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = keys::composite(&[name.as_bytes(), index_mac]);
        Ok(self.get::<Blob>(Kind::MutationMacs, &key)?.map(|b| b.0))
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        let mut batch = self.batch();
        for index_mac in index_macs {
            batch.remove(keys::composite(&[name.as_bytes(), index_mac]));
        }
        Ok(self.apply(Kind::MutationMacs, batch)?)
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        Ok(self.remove_prefix(Kind::MutationMacs, &keys::composite(&[name.as_bytes()]))?)
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get::<Blob>(Kind::Meta, meta::LATEST_SYNC_KEY_ID)?
            .map(|b| b.0))
    }
}
