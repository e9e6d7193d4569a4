//! Behaviour of the store on real sled files in a temporary directory.
//!
//! Most tests write through the `Backend` traits, close the database, open it
//! again and read back: a restart must never lose state.

mod accounts;
mod app_sync;
mod backup;
mod device;
mod durability;
mod msg_secret;
mod protocol;
mod sealed;
mod signal;
mod snapshot;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tempfile::TempDir;
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::Device;
use wacore::store::device::{CachedNoiseCert, CachedServerCertChain, account_serde};
use wacore::store::traits::*;

use super::backend::Kind;
use super::{MessageDb, SledBackend, StateDb, StoreError};

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// A state database with a message database beside it, whose backends
/// keep the library's per-message records there, as the daemon's do.
struct TestDb {
    state: StateDb,
    messages: Arc<MessageDb>,
}

impl std::ops::Deref for TestDb {
    type Target = StateDb;

    fn deref(&self) -> &StateDb {
        &self.state
    }
}

impl TestDb {
    /// [`StateDb::account`], with the account's message store attached.
    fn account(&self, name: &str) -> Result<Arc<SledBackend>, StoreError> {
        let backend = self.state.account(name)?;
        backend.keep_library_records_in(self.messages.account(name)?);
        Ok(backend)
    }
}

/// Where [`open`] keeps the message database of the state at `path`:
/// inside its directory, which sled leaves alone, so a copy of the
/// directory (a crash) takes it along.
fn messages_path(path: &Path) -> std::path::PathBuf {
    path.join("messages.db")
}

/// Opens the database at `path`, and the message database with it. sled
/// releases its file lock from a background thread shortly after the last
/// handle of a previous open is dropped, so a reopen within the same
/// process polls until it is free.
fn open(path: &Path) -> TestDb {
    let state = open_state(path);
    let messages = MessageDb::open(&messages_path(path), None).expect("open the message database");
    TestDb { state, messages }
}

/// [`open`] without the message database, as a backend is before its
/// account attaches its message store.
fn open_state(path: &Path) -> StateDb {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match StateDb::open(path) {
            Ok(db) => return db,
            Err(StoreError::Open { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("open the state database: {err}"),
        }
    }
}

/// Runs `write` against account `name` of a fresh database, closes the
/// database, and returns the account's backend from a reopened one.
async fn write_then_reopen<F, Fut>(
    dir: &TempDir,
    name: &str,
    write: F,
) -> (TestDb, Arc<SledBackend>)
where
    F: FnOnce(Arc<SledBackend>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    {
        let db = open(dir.path());
        write(db.account(name).unwrap()).await;
    }
    let db = open(dir.path());
    let backend = db.account(name).unwrap();
    (db, backend)
}

fn registered_device() -> Device {
    let mut device = Device::new();
    device.pn = Some("15551234567:12@s.whatsapp.net".parse().unwrap());
    device.lid = Some("100000012345678:12@lid".parse().unwrap());
    device.push_name = "Sales desk".into();
    // A protobuf ADVSignedDeviceIdentity: fields 1-4, each a few bytes.
    let adv = [0x0A, 3, 1, 2, 3, 0x12, 2, 9, 9, 0x1A, 1, 7, 0x22, 2, 8, 8];
    device.account = Some(Arc::new(account_serde::from_bytes(&adv).unwrap()));
    device.app_version_last_fetched_ms = 1_700_000_000_123;
    device.edge_routing_info = Some(vec![5, 6, 7]);
    device.props_hash = Some("abc".into());
    device.next_pre_key_id = 812;
    device.first_unupload_pre_key_id = 800;
    device.server_has_prekeys = true;
    device.nct_salt = Some(vec![1; 16]);
    device.server_cert_chain = Some(CachedServerCertChain {
        intermediate: CachedNoiseCert {
            key: [3; 32],
            not_before: 10,
            not_after: 20,
        },
        leaf: CachedNoiseCert {
            key: [4; 32],
            not_before: 11,
            not_after: 21,
        },
    });
    device.login_counter = 7;
    device.lid_migrated = true;
    device.read_receipts_disabled = true;
    device
}

/// wacore's own serde form covers every persisted field of `Device`, so two
/// devices with equal JSON carry the same credentials and keys.
fn device_json(device: &Device) -> serde_json::Value {
    serde_json::to_value(device).expect("wacore Device serializes to JSON")
}

fn mapping(lid: &str, pn: &str, at: i64) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.into(),
        phone_number: pn.into(),
        created_at: at,
        updated_at: at + 1,
        learning_source: "usync".into(),
    }
}

fn secret_entry(msg_id: &str, fill: u8, expires_at: i64, message_ts: i64) -> MsgSecretEntry {
    MsgSecretEntry {
        chat: "chat".into(),
        sender: "sender".into(),
        msg_id: msg_id.into(),
        secret: [fill; 32],
        expires_at,
        message_ts,
    }
}
