use async_trait::async_trait;
use wacore::stats::StorageResourceReport;
use wacore::store::Device;
use wacore::store::error::Result;
use wacore::store::traits::DeviceStore;

use super::{Kind, SledBackend, abort, meta};
use crate::store::records::{Counter, DeviceState};

#[async_trait]
impl DeviceStore for SledBackend {
    /// Saves and flushes at once: the device record holds the credentials, and
    /// losing a just-completed pairing to a crash would cost a second QR scan.
    async fn save(&self, device: &Device) -> Result<()> {
        self.put(Kind::Meta, meta::DEVICE, &DeviceState::from(device))?;
        self.flush()?;
        tracing::debug!(account = %self.account, "device record saved");
        Ok(())
    }

    async fn load(&self) -> Result<Option<Device>> {
        Ok(self.load_device()?)
    }

    async fn exists(&self) -> Result<bool> {
        Ok(self.contains(Kind::Meta, meta::DEVICE)?)
    }

    /// Like wacore's in-memory store, `create` materialises a fresh device
    /// (new keys) so `exists` is true afterwards; here it is also persisted,
    /// so the keys shown in the first QR survive a restart.
    async fn create(&self) -> Result<i32> {
        let fresh = self.encode(Kind::Meta, &DeviceState::from(&Device::new()))?;
        let gate = self.writing();
        let result = self.tree(Kind::Meta).transaction(|tx| {
            let tx = self.in_tx(tx);
            let next = match tx.get(meta::DEVICE_ID_SEQ)? {
                Some(bytes) => {
                    abort(self.decode::<Counter>(Kind::Meta, meta::DEVICE_ID_SEQ, &bytes))?.0 + 1
                }
                None => 1,
            };
            tx.insert(
                meta::DEVICE_ID_SEQ,
                abort(self.encode(Kind::Meta, &Counter(next)))?,
            )?;
            if tx.get(meta::DEVICE)?.is_none() {
                tx.insert(meta::DEVICE, fresh.clone())?;
            }
            Ok(next)
        });
        let id = self.tx_result(Kind::Meta, result)?;
        drop(gate);
        self.flush()?;
        i32::try_from(id).map_err(|_| {
            self.invalid(
                Kind::Meta,
                meta::DEVICE_ID_SEQ,
                format!("device id counter {id} exceeds i32"),
            )
            .into()
        })
    }

    /// The data lives on disk in sled; what sled caches in memory is bounded
    /// by its own cache size, shared by all accounts.
    async fn resource_report(&self) -> StorageResourceReport {
        StorageResourceReport {
            memory_bytes: Some(0),
            ..StorageResourceReport::default()
        }
    }
}
