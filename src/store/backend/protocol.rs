use async_trait::async_trait;
use sled::Transactional;
use wacore::store::error::Result;
use wacore::store::traits::{
    DeviceListRecord, LidPnMappingEntry, PendingInboundKey, PendingInboundRow, ProtocolStore,
    TcTokenEntry,
};

use super::space::Tx;
use super::{Kind, SledBackend, TxResult, abort};
use crate::store::StoreError;
use crate::store::keys;
use crate::store::records::{Blob, DeviceList, Flag, LidMapping, TcToken, Text};

type StoreResult<T> = std::result::Result<T, StoreError>;

impl SledBackend {
    /// Writes one LID mapping inside a transaction over `lid_mappings` and
    /// `pn_to_lid`, keeping the reverse index in step.
    fn put_lid_mapping_tx(
        &self,
        lids: &Tx<'_>,
        pns: &Tx<'_>,
        entry: &LidPnMappingEntry,
    ) -> TxResult<()> {
        let lid_key = entry.lid.as_bytes();
        if let Some(old) = lids.get(lid_key)? {
            let old: LidMapping = abort(self.decode(Kind::LidMappings, lid_key, &old))?;
            // The LID moved to another phone number: its old reverse entry is stale.
            if old.phone_number != entry.phone_number {
                pns.remove(old.phone_number.as_bytes())?;
            }
        }
        pns.insert(
            entry.phone_number.as_bytes(),
            abort(self.encode(Kind::PnToLid, &Text(entry.lid.clone())))?,
        )?;
        lids.insert(
            lid_key,
            abort(self.encode(Kind::LidMappings, &LidMapping::from(entry)))?,
        )?;
        Ok(())
    }

    fn put_lid_mappings_all(&self, entries: &[LidPnMappingEntry]) -> StoreResult<()> {
        let _gate = self.writing();
        let result =
            (self.tree(Kind::LidMappings), self.tree(Kind::PnToLid)).transaction(|(lids, pns)| {
                let (lids, pns) = (self.in_tx(lids), self.in_tx(pns));
                for entry in entries {
                    self.put_lid_mapping_tx(&lids, &pns, entry)?;
                }
                Ok(())
            });
        self.tx_result(Kind::LidMappings, result)
    }

    /// Atomic read-modify-write of one trusted-contact token row.
    fn update_tc_token(
        &self,
        jid: &str,
        update: impl Fn(Option<TcToken>) -> Option<TcToken>,
    ) -> StoreResult<()> {
        let key = jid.as_bytes();
        let _gate = self.writing();
        let result = self.tree(Kind::TcTokens).transaction(|tx| {
            let tx = self.in_tx(tx);
            let current = match tx.get(key)? {
                Some(bytes) => Some(abort(self.decode::<TcToken>(Kind::TcTokens, key, &bytes))?),
                None => None,
            };
            if let Some(next) = update(current) {
                tx.insert(key, abort(self.encode(Kind::TcTokens, &next))?)?;
            }
            Ok(())
        });
        self.tx_result(Kind::TcTokens, result)
    }
}

#[async_trait]
impl ProtocolStore for SledBackend {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let prefix = keys::composite(&[group_jid.as_bytes()]);
        let mut out = Vec::new();
        for (key, flag) in self.scan::<Flag>(Kind::SenderKeyDevices, &prefix)? {
            let device = keys::split(&key)
                .and_then(|parts| parts.get(1).map(|d| String::from_utf8(d.to_vec())))
                .and_then(|d| d.ok())
                .ok_or_else(|| {
                    self.invalid(
                        Kind::SenderKeyDevices,
                        &key,
                        "key is not a (group, device) pair".into(),
                    )
                })?;
            out.push((device, flag.0));
        }
        Ok(out)
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let mut batch = self.batch();
        for (device_jid, has_key) in entries {
            batch.insert(
                keys::composite(&[group_jid.as_bytes(), device_jid.as_bytes()]),
                self.encode(Kind::SenderKeyDevices, &Flag(*has_key))?,
            );
        }
        Ok(self.apply(Kind::SenderKeyDevices, batch)?)
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        let prefix = keys::composite(&[group_jid.as_bytes()]);
        Ok(self.remove_prefix(Kind::SenderKeyDevices, &prefix)?)
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let mut batch = self.batch();
        for key in self.scan_keys(Kind::SenderKeyDevices, &[])? {
            let matches = keys::split(&key)
                .and_then(|parts| parts.get(1).copied())
                .is_some_and(|device| device_jids.iter().any(|d| d.as_bytes() == device));
            if matches {
                batch.remove(key);
            }
        }
        Ok(self.apply(Kind::SenderKeyDevices, batch)?)
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        Ok(self.remove_prefix(Kind::SenderKeyDevices, &[])?)
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        Ok(self
            .get::<LidMapping>(Kind::LidMappings, lid.as_bytes())?
            .map(Into::into))
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let Some(lid) = self.get::<Text>(Kind::PnToLid, phone.as_bytes())? else {
            return Ok(None);
        };
        self.get_lid_mapping(&lid.0).await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        Ok(self.put_lid_mappings_all(std::slice::from_ref(entry))?)
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        Ok(self.put_lid_mappings_all(entries)?)
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        Ok(self
            .scan::<LidMapping>(Kind::LidMappings, &[])?
            .into_iter()
            .map(|(_, m)| m.into())
            .collect())
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        let key = keys::composite(&[address.as_bytes(), message_id.as_bytes()]);
        Ok(self.put(Kind::BaseKeys, &key, &Blob(base_key.to_vec()))?)
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        let key = keys::composite(&[address.as_bytes(), message_id.as_bytes()]);
        Ok(self
            .get::<Blob>(Kind::BaseKeys, &key)?
            .is_some_and(|stored| stored.0 == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        let key = keys::composite(&[address.as_bytes(), message_id.as_bytes()]);
        Ok(self.remove(Kind::BaseKeys, &key)?)
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        Ok(self.put(
            Kind::DeviceLists,
            record.user.as_bytes(),
            &DeviceList::from(&record),
        )?)
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let mut batch = self.batch();
        for record in &records {
            batch.insert(
                record.user.as_bytes(),
                self.encode(Kind::DeviceLists, &DeviceList::from(record))?,
            );
        }
        Ok(self.apply(Kind::DeviceLists, batch)?)
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        Ok(self
            .get::<DeviceList>(Kind::DeviceLists, user.as_bytes())?
            .map(Into::into))
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        Ok(self.remove(Kind::DeviceLists, user.as_bytes())?)
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get::<Blob>(Kind::GroupMetadata, group_jid.as_bytes())?
            .map(|b| b.0))
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        Ok(self.put(
            Kind::GroupMetadata,
            group_jid.as_bytes(),
            &Blob(blob.to_vec()),
        )?)
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        Ok(self.remove(Kind::GroupMetadata, group_jid.as_bytes())?)
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        Ok(self
            .get::<TcToken>(Kind::TcTokens, jid.as_bytes())?
            .map(Into::into))
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        Ok(self.put(Kind::TcTokens, jid.as_bytes(), &TcToken::from(entry))?)
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        Ok(self.remove(Kind::TcTokens, jid.as_bytes())?)
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for key in self.scan_keys(Kind::TcTokens, &[])? {
            out.push(
                String::from_utf8(key.to_vec()).map_err(|_| {
                    self.invalid(Kind::TcTokens, &key, "JID key is not UTF-8".into())
                })?,
            );
        }
        Ok(out)
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let mut batch = self.batch();
        let mut removed = 0u32;
        for (key, entry) in self.scan::<TcToken>(Kind::TcTokens, &[])? {
            // Kept while either window is live: the received token or the sender bucket.
            let token_live = !entry.token.is_empty() && entry.token_timestamp >= token_cutoff;
            let sender_live = entry.sender_timestamp.is_some_and(|ts| ts >= sender_cutoff);
            if !token_live && !sender_live {
                batch.remove(key);
                removed += 1;
            }
        }
        self.apply(Kind::TcTokens, batch)?;
        Ok(removed)
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        Ok(self.update_tc_token(jid, |current| {
            Some(match current {
                Some(existing) => TcToken {
                    sender_timestamp: Some(
                        existing
                            .sender_timestamp
                            .map_or(sender_timestamp, |e| e.max(sender_timestamp)),
                    ),
                    ..existing
                },
                None => TcToken {
                    token: Vec::new(),
                    token_timestamp: sender_timestamp,
                    sender_timestamp: Some(sender_timestamp),
                },
            })
        })?)
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        Ok(self.update_tc_token(jid, |current| match current {
            // Newer wins; a byte-less placeholder never blocks the first real token.
            Some(existing)
                if !existing.token.is_empty() && token_timestamp < existing.token_timestamp =>
            {
                None
            }
            Some(existing) => Some(TcToken {
                token: token.to_vec(),
                token_timestamp,
                sender_timestamp: existing.sender_timestamp,
            }),
            None => Some(TcToken {
                token: token.to_vec(),
                token_timestamp,
                sender_timestamp: None,
            }),
        })?)
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        Ok(self
            .library("keep a copy of a sent message")?
            .keep_sent_copy(
                chat_jid,
                message_id,
                payload.to_vec(),
                wacore::time::now_secs(),
            )?)
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        let library = self.library("take a copy of a sent message")?;
        if let Some(taken) = library.take_sent_copy(chat_jid, message_id).await? {
            return Ok(Some(taken));
        }
        match self.resend_source() {
            Some(source) => Ok(source.payload(chat_jid, message_id).await),
            None => Ok(None),
        }
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        Ok(self
            .library("delete old copies of sent messages")?
            .delete_sent_copies_before(cutoff_timestamp)
            .await?)
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.store_pending_inbound_batch(&[PendingInboundRow {
            chat,
            sender,
            id,
            message,
        }])
        .await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        Ok(self
            .library("buffer received messages")?
            .buffer_inbound(rows, wacore::time::now_secs())
            .await?)
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .library("read a buffered received message")?
            .buffered_inbound(chat, sender, id)
            .await?)
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete_pending_inbound_batch(&[PendingInboundKey { chat, sender, id }])
            .await
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        Ok(self
            .library("drop received messages from the buffer")?
            .unbuffer_inbound(keys)?)
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        Ok(self
            .library("delete old buffered received messages")?
            .delete_inbound_buffered_before(cutoff_timestamp)
            .await?)
    }
}
