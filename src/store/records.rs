//! The record types walink writes to sled, one per stored shape.
//!
//! They mirror wacore's types field by field instead of serializing wacore's
//! types directly: bincode is not self-describing, so a serde attribute such
//! as `skip_serializing_if` in a library type would make its own values
//! undecodable, and a field added by a library upgrade would silently change
//! the byte layout under an unchanged schema version. Here every layout change
//! is ours, visible, and versioned.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wacore::appstate::hash::HashState;
use wacore::client_profile::ClientProfile;
use wacore::libsignal::protocol::{KeyPair, PrivateKey, PublicKey};
use wacore::store::Device;
use wacore::store::device::{CachedNoiseCert, CachedServerCertChain, DEVICE_PROPS, account_serde};
use wacore::store::traits::{
    AppStateSyncKey, DeviceInfo, DeviceListRecord, LidPnMappingEntry, TcTokenEntry,
};
use wacore_binary::{Jid, Server};

use super::codec::Record;

macro_rules! record {
    ($ty:ty, $name:literal, $version:literal) => {
        impl Record for $ty {
            const NAME: &'static str = $name;
            const VERSION: u8 = $version;
        }
    };
}

/// Opaque bytes owned by the library (Signal sessions, sender keys, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Blob(pub Vec<u8>);
record!(Blob, "blob", 1);

/// A remote identity key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdentityKey(pub [u8; 32]);
record!(IdentityKey, "identity key", 1);

/// A boolean row value (sender-key distribution status).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Flag(pub bool);
record!(Flag, "flag", 1);

/// A text row value (the LID a phone number maps to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Text(pub String);
record!(Text, "text", 1);

/// A monotonically increasing counter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Counter(pub u64);
record!(Counter, "counter", 1);

/// The WhatsApp Web version an account last fetched or connected with,
/// so a reconnect never waits for (or fails on) the version page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebVersion {
    pub version: (u32, u32, u32),
    /// When it was last fetched from web.whatsapp.com, Unix milliseconds
    /// (0 when it was only ever connected with, never fetched).
    pub fetched_at_ms: u64,
}
record!(WebVersion, "web version", 1);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PreKey {
    pub record: Vec<u8>,
    pub uploaded: bool,
}
record!(PreKey, "pre-key", 1);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SyncKey {
    pub key_data: Vec<u8>,
    pub fingerprint: Vec<u8>,
    pub timestamp: i64,
}
record!(SyncKey, "app-state sync key", 1);

impl From<&AppStateSyncKey> for SyncKey {
    fn from(k: &AppStateSyncKey) -> Self {
        Self {
            key_data: k.key_data.clone(),
            fingerprint: k.fingerprint.clone(),
            timestamp: k.timestamp,
        }
    }
}

impl From<SyncKey> for AppStateSyncKey {
    fn from(k: SyncKey) -> Self {
        Self {
            key_data: k.key_data,
            fingerprint: k.fingerprint,
            timestamp: k.timestamp,
        }
    }
}

/// App-state collection version. The map is stored sorted so the same state
/// always encodes to the same bytes (snapshots deduplicate on that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AppStateVersion {
    pub version: u64,
    pub hash: Vec<u8>,
    pub index_value_map: Vec<(String, Vec<u8>)>,
    pub mac_mismatch_fatal: bool,
}
record!(AppStateVersion, "app-state version", 1);

impl From<&HashState> for AppStateVersion {
    fn from(s: &HashState) -> Self {
        let mut index_value_map: Vec<(String, Vec<u8>)> = s
            .index_value_map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        index_value_map.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Self {
            version: s.version,
            hash: s.hash.to_vec(),
            index_value_map,
            mac_mismatch_fatal: s.mac_mismatch_fatal,
        }
    }
}

impl AppStateVersion {
    pub fn into_hash_state(self) -> Result<HashState, String> {
        let hash = self
            .hash
            .try_into()
            .map_err(|h: Vec<u8>| format!("app-state hash has {} bytes, expected 128", h.len()))?;
        Ok(HashState {
            version: self.version,
            hash,
            index_value_map: self.index_value_map.into_iter().collect(),
            mac_mismatch_fatal: self.mac_mismatch_fatal,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LidMapping {
    pub lid: String,
    pub phone_number: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub learning_source: String,
}
record!(LidMapping, "LID-PN mapping", 1);

impl From<&LidPnMappingEntry> for LidMapping {
    fn from(e: &LidPnMappingEntry) -> Self {
        Self {
            lid: e.lid.clone(),
            phone_number: e.phone_number.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
            learning_source: e.learning_source.clone(),
        }
    }
}

impl From<LidMapping> for LidPnMappingEntry {
    fn from(e: LidMapping) -> Self {
        Self {
            lid: e.lid,
            phone_number: e.phone_number,
            created_at: e.created_at,
            updated_at: e.updated_at,
            learning_source: e.learning_source,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceEntry {
    pub device_id: u32,
    pub key_index: Option<u32>,
    pub is_hosted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceList {
    pub user: String,
    pub devices: Vec<DeviceEntry>,
    pub timestamp: i64,
    pub phash: Option<String>,
    pub raw_id: Option<u32>,
}
record!(DeviceList, "device list", 1);

impl From<&DeviceListRecord> for DeviceList {
    fn from(r: &DeviceListRecord) -> Self {
        Self {
            user: r.user.clone(),
            devices: r
                .devices
                .iter()
                .map(|d| DeviceEntry {
                    device_id: d.device_id,
                    key_index: d.key_index,
                    is_hosted: d.is_hosted,
                })
                .collect(),
            timestamp: r.timestamp,
            phash: r.phash.clone(),
            raw_id: r.raw_id,
        }
    }
}

impl From<DeviceList> for DeviceListRecord {
    fn from(r: DeviceList) -> Self {
        Self {
            user: r.user,
            devices: r
                .devices
                .into_iter()
                .map(|d| DeviceInfo::new(d.device_id, d.key_index).with_hosting(d.is_hosted))
                .collect(),
            timestamp: r.timestamp,
            phash: r.phash,
            raw_id: r.raw_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TcToken {
    pub token: Vec<u8>,
    pub token_timestamp: i64,
    pub sender_timestamp: Option<i64>,
}
record!(TcToken, "trusted-contact token", 1);

impl From<&TcTokenEntry> for TcToken {
    fn from(e: &TcTokenEntry) -> Self {
        Self {
            token: e.token.clone(),
            token_timestamp: e.token_timestamp,
            sender_timestamp: e.sender_timestamp,
        }
    }
}

impl From<TcToken> for TcTokenEntry {
    fn from(e: TcToken) -> Self {
        Self {
            token: e.token,
            token_timestamp: e.token_timestamp,
            sender_timestamp: e.sender_timestamp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NoiseCert {
    pub key: [u8; 32],
    pub not_before: i64,
    pub not_after: i64,
}

impl From<&CachedNoiseCert> for NoiseCert {
    fn from(c: &CachedNoiseCert) -> Self {
        Self {
            key: c.key,
            not_before: c.not_before,
            not_after: c.not_after,
        }
    }
}

impl From<NoiseCert> for CachedNoiseCert {
    fn from(c: NoiseCert) -> Self {
        Self {
            key: c.key,
            not_before: c.not_before,
            not_after: c.not_after,
        }
    }
}

/// A JID, field by field (the library's own serde form is not ours to version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JidRecord {
    pub user: String,
    pub server: String,
    pub agent: u8,
    pub device: u16,
    pub integrator: u16,
}

impl From<&Jid> for JidRecord {
    fn from(jid: &Jid) -> Self {
        let Jid {
            user,
            server,
            agent,
            device,
            integrator,
        } = jid;
        Self {
            user: user.to_string(),
            server: server.as_str().to_owned(),
            agent: *agent,
            device: *device,
            integrator: *integrator,
        }
    }
}

impl JidRecord {
    pub fn into_jid(self) -> Result<Jid, String> {
        let server = Server::try_from(self.server.as_str())
            .map_err(|e| format!("JID server {:?} is invalid: {e}", self.server))?;
        Ok(Jid {
            user: self.user.into(),
            server,
            agent: self.agent,
            device: self.device,
            integrator: self.integrator,
        })
    }

    /// The JID's text form, e.g. `15551234567:12@s.whatsapp.net`.
    pub fn render(self) -> Option<String> {
        self.into_jid().ok().map(|jid| jid.to_string())
    }
}

/// The account's own device: keys, identity and the registration (`pn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceState {
    pub pn: Option<JidRecord>,
    pub lid: Option<JidRecord>,
    pub registration_id: u32,
    pub noise_key: Vec<u8>,
    pub identity_key: Vec<u8>,
    pub signed_pre_key: Vec<u8>,
    pub signed_pre_key_id: u32,
    pub signed_pre_key_signature: Vec<u8>,
    pub adv_secret_key: [u8; 32],
    pub account: Option<Vec<u8>>,
    pub push_name: String,
    pub app_version_primary: u32,
    pub app_version_secondary: u32,
    pub app_version_tertiary: u32,
    pub app_version_last_fetched_ms: i64,
    pub edge_routing_info: Option<Vec<u8>>,
    pub props_hash: Option<String>,
    pub next_pre_key_id: u32,
    pub first_unupload_pre_key_id: u32,
    pub server_has_prekeys: bool,
    pub nct_salt: Option<Vec<u8>>,
    pub server_cert_chain: Option<(NoiseCert, NoiseCert)>,
    pub login_counter: i32,
    pub lid_migrated: bool,
    pub last_signed_pre_key_rotation_ms: i64,
    pub read_receipts_disabled: bool,
}
record!(DeviceState, "device", 1);

fn key_pair_bytes(pair: &KeyPair) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(pair.private_key.serialize());
    out.extend_from_slice(pair.public_key.public_key_bytes());
    out
}

fn key_pair_from(bytes: &[u8], what: &str) -> Result<KeyPair, String> {
    if bytes.len() != 64 {
        return Err(format!("{what} has {} bytes, expected 64", bytes.len()));
    }
    let private = PrivateKey::deserialize(&bytes[..32])
        .map_err(|e| format!("{what} private key is invalid: {e}"))?;
    let public = PublicKey::from_djb_public_key_bytes(&bytes[32..])
        .map_err(|e| format!("{what} public key is invalid: {e}"))?;
    Ok(KeyPair::new(public, private))
}

impl From<&Device> for DeviceState {
    fn from(device: &Device) -> Self {
        // Exhaustive on purpose: a field added to `Device` by a library upgrade
        // fails to compile here instead of being silently dropped on save.
        let Device {
            pn,
            lid,
            registration_id,
            noise_key,
            identity_key,
            signed_pre_key,
            signed_pre_key_id,
            signed_pre_key_signature,
            adv_secret_key,
            account,
            push_name,
            app_version_primary,
            app_version_secondary,
            app_version_tertiary,
            app_version_last_fetched_ms,
            device_props: _,
            client_profile: _,
            edge_routing_info,
            props_hash,
            next_pre_key_id,
            first_unupload_pre_key_id,
            server_has_prekeys,
            nct_salt,
            nct_salt_sync_seen: _,
            server_cert_chain,
            login_counter,
            lid_migrated,
            last_signed_pre_key_rotation_ms,
            read_receipts_disabled,
        } = device;
        Self {
            pn: pn.as_ref().map(JidRecord::from),
            lid: lid.as_ref().map(JidRecord::from),
            registration_id: *registration_id,
            noise_key: key_pair_bytes(noise_key),
            identity_key: key_pair_bytes(identity_key),
            signed_pre_key: key_pair_bytes(signed_pre_key),
            signed_pre_key_id: *signed_pre_key_id,
            signed_pre_key_signature: signed_pre_key_signature.to_vec(),
            adv_secret_key: *adv_secret_key,
            account: account.as_deref().map(account_serde::to_bytes),
            push_name: push_name.clone(),
            app_version_primary: *app_version_primary,
            app_version_secondary: *app_version_secondary,
            app_version_tertiary: *app_version_tertiary,
            app_version_last_fetched_ms: *app_version_last_fetched_ms,
            edge_routing_info: edge_routing_info.clone(),
            props_hash: props_hash.clone(),
            next_pre_key_id: *next_pre_key_id,
            first_unupload_pre_key_id: *first_unupload_pre_key_id,
            server_has_prekeys: *server_has_prekeys,
            nct_salt: nct_salt.clone(),
            server_cert_chain: server_cert_chain
                .as_ref()
                .map(|c| ((&c.intermediate).into(), (&c.leaf).into())),
            login_counter: *login_counter,
            lid_migrated: *lid_migrated,
            last_signed_pre_key_rotation_ms: *last_signed_pre_key_rotation_ms,
            read_receipts_disabled: *read_receipts_disabled,
        }
    }
}

impl DeviceState {
    /// Rebuilds the library's `Device`. Runtime-only fields get the values a
    /// fresh device has; the client sets them again before connecting.
    pub fn into_device(self) -> Result<Device, String> {
        let signed_pre_key_signature: [u8; 64] =
            self.signed_pre_key_signature
                .try_into()
                .map_err(|s: Vec<u8>| {
                    format!(
                        "signed pre-key signature has {} bytes, expected 64",
                        s.len()
                    )
                })?;
        let account = match self.account {
            Some(bytes) => Some(Arc::new(
                account_serde::from_bytes(&bytes)
                    .map_err(|e| format!("ADV device identity is invalid: {e}"))?,
            )),
            None => None,
        };
        Ok(Device {
            pn: self.pn.map(JidRecord::into_jid).transpose()?,
            lid: self.lid.map(JidRecord::into_jid).transpose()?,
            registration_id: self.registration_id,
            noise_key: key_pair_from(&self.noise_key, "noise key")?,
            identity_key: key_pair_from(&self.identity_key, "identity key")?,
            signed_pre_key: key_pair_from(&self.signed_pre_key, "signed pre-key")?,
            signed_pre_key_id: self.signed_pre_key_id,
            signed_pre_key_signature,
            adv_secret_key: self.adv_secret_key,
            account,
            push_name: self.push_name,
            app_version_primary: self.app_version_primary,
            app_version_secondary: self.app_version_secondary,
            app_version_tertiary: self.app_version_tertiary,
            app_version_last_fetched_ms: self.app_version_last_fetched_ms,
            device_props: Arc::new(DEVICE_PROPS.clone()),
            client_profile: ClientProfile::web(),
            edge_routing_info: self.edge_routing_info,
            props_hash: self.props_hash,
            next_pre_key_id: self.next_pre_key_id,
            first_unupload_pre_key_id: self.first_unupload_pre_key_id,
            server_has_prekeys: self.server_has_prekeys,
            nct_salt: self.nct_salt,
            nct_salt_sync_seen: false,
            server_cert_chain: self.server_cert_chain.map(|(intermediate, leaf)| {
                CachedServerCertChain {
                    intermediate: intermediate.into(),
                    leaf: leaf.into(),
                }
            }),
            login_counter: self.login_counter,
            lid_migrated: self.lid_migrated,
            last_signed_pre_key_rotation_ms: self.last_signed_pre_key_rotation_ms,
            read_receipts_disabled: self.read_receipts_disabled,
        })
    }
}
