//! Behaviour of the store on real sled files in a temporary directory.
//!
//! Most tests write through the `Backend` traits, close the database, open it
//! again and read back: a restart must never lose state.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tempfile::TempDir;
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::Device;
use wacore::store::device::{CachedNoiseCert, CachedServerCertChain, account_serde};
use wacore::store::traits::*;

use super::backend::Kind;
use super::{SledBackend, StateDb, StoreError};

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

fn open(path: &Path) -> StateDb {
    StateDb::open(path).expect("open the state database")
}

/// Runs `write` against account `name` of a fresh database, closes the
/// database, and returns the account's backend from a reopened one.
async fn write_then_reopen<F, Fut>(
    dir: &TempDir,
    name: &str,
    write: F,
) -> (StateDb, Arc<SledBackend>)
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

// ---------------------------------------------------------------------------
// StateDb and account-level helpers
// ---------------------------------------------------------------------------

#[test]
fn open_creates_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let path = dir.path().join("nested/state");
    let db = open(&path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "state dir mode {mode:o}");
    assert_eq!(db.path(), path);
    db.account("sales")
        .unwrap()
        .put(Kind::Sessions, b"k", &super::records::Blob(vec![7; 4096]))
        .unwrap();
    db.flush().unwrap();
    assert!(db.size_on_disk().unwrap() >= 4096);
}

#[test]
fn open_on_a_file_names_the_path() {
    let dir = temp_dir();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = StateDb::open(&file.join("state")).unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("not-a-dir/state"), "{msg}");
    assert!(msg.contains("state_dir"), "{msg}");
}

#[test]
fn account_names_are_validated_and_backends_shared() {
    let dir = temp_dir();
    let db = open(dir.path());
    for bad in ["", "a:b", "a b", "sales/eu", &"x".repeat(65)] {
        let err = db.account(bad).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidAccountName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let first = db.account("sales-eu_1.x").unwrap();
    let again = db.account("sales-eu_1.x").unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    db.account("billing").unwrap();
    assert_eq!(db.account_names(), vec!["billing", "sales-eu_1.x"]);
}

#[tokio::test]
async fn registered_device_gives_credentials_and_jid_after_reopen() {
    let dir = temp_dir();
    let (_db, acct) = write_then_reopen(&dir, "sales", |acct| async move {
        assert!(!acct.has_credentials());
        assert_eq!(acct.jid(), None);
        acct.save(&Device::new()).await.unwrap();
        // A device that is not paired yet holds keys but no credentials.
        assert!(!acct.has_credentials());
        assert_eq!(acct.jid(), None);
        acct.save(&registered_device()).await.unwrap();
    })
    .await;
    assert!(acct.has_credentials());
    assert_eq!(acct.jid().as_deref(), Some("15551234567:12@s.whatsapp.net"));
}

#[tokio::test]
async fn accounts_never_see_each_other_and_clear_wipes_one() {
    let dir = temp_dir();
    let db = open(dir.path());
    let a = db.account("a").unwrap();
    let b = db.account("b").unwrap();
    for (acct, tag) in [(&a, 1u8), (&b, 2u8)] {
        acct.save(&registered_device()).await.unwrap();
        acct.put_session("peer@s.whatsapp.net", &[tag])
            .await
            .unwrap();
        acct.put_identity("peer@s.whatsapp.net", [tag; 32])
            .await
            .unwrap();
        acct.store_prekey(1, &[tag], false).await.unwrap();
        acct.set_sync_key(b"k", AppStateSyncKey::default())
            .await
            .unwrap();
        acct.store_sent_message("c@s.whatsapp.net", "m", &[tag])
            .await
            .unwrap();
        acct.put_msg_secret("c", "s", "m", &[tag; 32])
            .await
            .unwrap();
    }
    b.put_session("only-b@s.whatsapp.net", b"x").await.unwrap();

    assert_eq!(
        a.get_session("peer@s.whatsapp.net").await.unwrap().unwrap(),
        Bytes::from_static(&[1])
    );
    assert_eq!(
        b.get_session("peer@s.whatsapp.net").await.unwrap().unwrap(),
        Bytes::from_static(&[2])
    );
    assert!(
        a.get_session("only-b@s.whatsapp.net")
            .await
            .unwrap()
            .is_none()
    );

    let size_a = a.size_bytes();
    assert!(size_a > 0);
    a.clear().unwrap();
    assert_eq!(a.size_bytes(), 0);
    assert!(!a.has_credentials());
    assert!(!a.exists().await.unwrap());
    assert!(
        a.get_session("peer@s.whatsapp.net")
            .await
            .unwrap()
            .is_none()
    );
    assert!(a.get_msg_secret("c", "s", "m").await.unwrap().is_none());
    assert!(a.get_latest_sync_key_id().await.unwrap().is_none());

    assert!(b.has_credentials());
    assert_eq!(
        b.get_session("peer@s.whatsapp.net").await.unwrap().unwrap(),
        Bytes::from_static(&[2])
    );
    assert_eq!(
        b.load_identity("peer@s.whatsapp.net").await.unwrap(),
        Some([2; 32])
    );
    assert_eq!(
        b.take_sent_message("c@s.whatsapp.net", "m").await.unwrap(),
        Some(vec![2])
    );
    assert!(b.get_msg_secret("c", "s", "m").await.unwrap().is_some());
    assert!(b.size_bytes() > 0);

    // The wipe is durable, and the other account's data too.
    drop((a, b, db));
    let db = open(dir.path());
    assert!(!db.account("a").unwrap().has_credentials());
    assert!(db.account("b").unwrap().has_credentials());
}

#[tokio::test]
async fn damaged_value_names_account_tree_and_key() {
    let dir = temp_dir();
    let db = open(dir.path());
    let acct = db.account("sales").unwrap();
    acct.tree(Kind::Sessions)
        .insert("peer@s.whatsapp.net", vec![1u8, 0xFF])
        .unwrap();
    let err = acct.get_session("peer@s.whatsapp.net").await.unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("sales"), "{chain}");
    assert!(chain.contains("sessions"), "{chain}");
    assert!(chain.contains("peer@s.whatsapp.net"), "{chain}");

    acct.tree(Kind::Meta)
        .insert("device", vec![9u8, 1, 2])
        .unwrap();
    assert!(!acct.has_credentials());
    let Err(err) = acct.load_device() else {
        panic!("a device record with an unknown schema version must not load");
    };
    let msg = err.to_string();
    assert!(msg.contains("schema version 9"), "{msg}");
    assert!(msg.contains("restore a backup"), "{msg}");
}

// ---------------------------------------------------------------------------
// DeviceStore
// ---------------------------------------------------------------------------

#[tokio::test]
async fn first_start_device_survives_restart_identical() {
    let dir = temp_dir();
    let created = {
        let db = open(dir.path());
        let backend: Arc<dyn Backend> = db.account("sales").unwrap();
        // The same steps whatsapp-rust takes on a first start.
        let manager = wacore::store::PersistenceManager::new(backend.clone())
            .await
            .unwrap();
        let device = manager.get_device_snapshot().await;
        assert!(backend.exists().await.unwrap());
        assert!(!device.is_registered());
        device
    };
    let db = open(dir.path());
    let acct = db.account("sales").unwrap();
    let loaded = acct
        .load()
        .await
        .unwrap()
        .expect("device persisted by create()");
    assert_eq!(device_json(&loaded), device_json(&created));
    assert_eq!(
        loaded.identity_key.public_key.public_key_bytes(),
        created.identity_key.public_key.public_key_bytes()
    );
    assert_eq!(
        loaded.noise_key.private_key.serialize(),
        created.noise_key.private_key.serialize()
    );
    // A second start reuses the stored device instead of making new keys.
    let manager = wacore::store::PersistenceManager::new(acct.clone() as Arc<dyn Backend>)
        .await
        .unwrap();
    assert_eq!(
        device_json(&manager.get_device_snapshot().await),
        device_json(&created)
    );
}

#[tokio::test]
async fn every_device_field_round_trips() {
    let dir = temp_dir();
    let original = registered_device();
    let saved = original.clone();
    let (_db, acct) = write_then_reopen(&dir, "sales", |acct| async move {
        acct.save(&saved).await.unwrap();
    })
    .await;
    let loaded = acct.load().await.unwrap().unwrap();
    assert_eq!(device_json(&loaded), device_json(&original));
    assert!(loaded.account.is_some());
    assert_eq!(loaded.server_cert_chain, original.server_cert_chain);
}

#[tokio::test]
async fn create_counts_ids_and_keeps_the_first_device() {
    let dir = temp_dir();
    let db = open(dir.path());
    let acct = db.account("sales").unwrap();
    assert!(!acct.exists().await.unwrap());
    assert!(acct.load().await.unwrap().is_none());
    assert_eq!(acct.create().await.unwrap(), 1);
    let first = acct.load().await.unwrap().unwrap();
    assert_eq!(acct.create().await.unwrap(), 2);
    assert_eq!(
        device_json(&acct.load().await.unwrap().unwrap()),
        device_json(&first)
    );
    assert_eq!(acct.resource_report().await.memory_bytes, Some(0));
}

// ---------------------------------------------------------------------------
// SignalStore
// ---------------------------------------------------------------------------

#[tokio::test]
async fn signal_state_round_trips_across_restart() {
    let dir = temp_dir();
    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        s.put_identity("a@s.whatsapp.net", [1; 32]).await.unwrap();
        s.put_identities_batch(&[
            (Arc::from("b:3@s.whatsapp.net"), [2; 32]),
            (Arc::from("c@lid"), [3; 32]),
        ])
        .await
        .unwrap();
        s.put_identity("gone@s.whatsapp.net", [4; 32])
            .await
            .unwrap();
        s.delete_identity("gone@s.whatsapp.net").await.unwrap();

        s.put_session("a@s.whatsapp.net", b"s1").await.unwrap();
        s.put_sessions_batch(&[
            (
                Arc::from("a@s.whatsapp.net"),
                Bytes::from_static(b"s1-updated"),
            ),
            (Arc::from("b:3@s.whatsapp.net"), Bytes::from_static(b"s2")),
        ])
        .await
        .unwrap();
        s.put_session("gone@s.whatsapp.net", b"x").await.unwrap();
        s.delete_session("gone@s.whatsapp.net").await.unwrap();

        s.store_prekey(5, b"pk5", false).await.unwrap();
        s.store_prekeys_batch(
            &[
                (300, Bytes::from_static(b"pk300")),
                (7, Bytes::from_static(b"pk7")),
            ],
            true,
        )
        .await
        .unwrap();
        s.store_prekey(9, b"pk9", false).await.unwrap();
        s.remove_prekey(9).await.unwrap();
        // Marking a consumed key uploaded must not bring it back.
        s.mark_prekeys_uploaded(&[5, 9]).await.unwrap();

        s.store_signed_prekey(2, b"spk2").await.unwrap();
        s.store_signed_prekey(1, b"spk1").await.unwrap();
        s.store_signed_prekey(3, b"spk3").await.unwrap();
        s.remove_signed_prekey(3).await.unwrap();

        s.put_sender_key("g@g.us::a", b"sk1").await.unwrap();
        s.put_sender_keys_batch(&[
            (Arc::from("g@g.us::a"), Bytes::from_static(b"sk1-updated")),
            (Arc::from("g@g.us::b"), Bytes::from_static(b"sk2")),
        ])
        .await
        .unwrap();
        s.put_sender_key("g@g.us::c", b"sk3").await.unwrap();
        s.delete_sender_key("g@g.us::c").await.unwrap();
    })
    .await;

    assert_eq!(
        s.load_identity("a@s.whatsapp.net").await.unwrap(),
        Some([1; 32])
    );
    assert_eq!(
        s.load_identity("b:3@s.whatsapp.net").await.unwrap(),
        Some([2; 32])
    );
    assert_eq!(s.load_identity("c@lid").await.unwrap(), Some([3; 32]));
    assert_eq!(s.load_identity("gone@s.whatsapp.net").await.unwrap(), None);

    assert_eq!(
        s.get_session("a@s.whatsapp.net").await.unwrap().unwrap(),
        Bytes::from_static(b"s1-updated")
    );
    assert!(s.has_session("b:3@s.whatsapp.net").await.unwrap());
    assert!(!s.has_session("gone@s.whatsapp.net").await.unwrap());
    assert!(
        s.get_session("gone@s.whatsapp.net")
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(
        s.load_prekey(5).await.unwrap().unwrap(),
        Bytes::from_static(b"pk5")
    );
    assert!(s.load_prekey(9).await.unwrap().is_none());
    assert_eq!(
        s.load_prekeys_batch(&[7, 9, 300, 5]).await.unwrap(),
        vec![
            (7, Bytes::from_static(b"pk7")),
            (300, Bytes::from_static(b"pk300")),
            (5, Bytes::from_static(b"pk5")),
        ]
    );
    // Numeric, not lexicographic, maximum: 300 > 7 although "7" > "3".
    assert_eq!(s.get_max_prekey_id().await.unwrap(), 300);
    let uploaded = |id: u32| {
        s.get::<super::records::PreKey>(Kind::PreKeys, &super::keys::id(id))
            .unwrap()
            .map(|k| k.uploaded)
    };
    assert_eq!(uploaded(5), Some(true));
    assert_eq!(uploaded(7), Some(true));
    assert_eq!(uploaded(9), None);

    assert_eq!(s.load_signed_prekey(2).await.unwrap().unwrap(), b"spk2");
    assert!(s.load_signed_prekey(3).await.unwrap().is_none());
    assert_eq!(
        s.load_all_signed_prekeys().await.unwrap(),
        vec![(1, b"spk1".to_vec()), (2, b"spk2".to_vec())]
    );

    assert_eq!(
        s.get_sender_key("g@g.us::a").await.unwrap().unwrap(),
        b"sk1-updated"
    );
    assert_eq!(
        s.get_sender_key("g@g.us::b").await.unwrap().unwrap(),
        b"sk2"
    );
    assert!(s.get_sender_key("g@g.us::c").await.unwrap().is_none());
}

#[tokio::test]
async fn empty_store_answers_like_the_reference() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    assert_eq!(s.get_max_prekey_id().await.unwrap(), 0);
    assert!(s.load_all_signed_prekeys().await.unwrap().is_empty());
    assert!(s.get_latest_sync_key_id().await.unwrap().is_none());
    let version = s.get_version("regular").await.unwrap();
    assert_eq!(version.version, 0);
    assert_eq!(version.hash, [0; 128]);
    assert!(s.get_all_lid_mappings().await.unwrap().is_empty());
    assert!(s.get_sender_key_devices("g@g.us").await.unwrap().is_empty());
    assert_eq!(s.delete_expired_sent_messages(i64::MAX).await.unwrap(), 0);
    assert_eq!(s.delete_expired_msg_secrets(i64::MAX).await.unwrap(), 0);
    assert_eq!(
        s.delete_expired_tc_tokens(i64::MAX, i64::MAX)
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.delete_expired_pending_inbound(i64::MAX).await.unwrap(), 0);
    assert!(!s.has_same_base_key("a", "m", b"k").await.unwrap());
}

#[tokio::test]
async fn has_signal_state_for_user_matches_by_user_prefix() {
    let dir = temp_dir();
    let db = open(dir.path());
    let user = "5511999990000";

    let s = db.account("one").unwrap();
    assert!(!s.has_signal_state_for_user(user).await.unwrap());
    s.put_session("5511999990000@s.whatsapp.net", b"sess")
        .await
        .unwrap();
    assert!(s.has_signal_state_for_user(user).await.unwrap());

    // A different user that this one is a prefix of must not match.
    let other = db.account("two").unwrap();
    other
        .put_session("55119999900001@s.whatsapp.net", b"sess")
        .await
        .unwrap();
    assert!(!other.has_signal_state_for_user(user).await.unwrap());

    // Non-zero device is keyed `user:dev@server`; identity-only also counts.
    let dev = db.account("three").unwrap();
    dev.put_identity("5511999990000:5@s.whatsapp.net", [7; 32])
        .await
        .unwrap();
    assert!(dev.has_signal_state_for_user(user).await.unwrap());
}

// ---------------------------------------------------------------------------
// AppSyncStore
// ---------------------------------------------------------------------------

#[tokio::test]
async fn app_sync_state_round_trips_across_restart() {
    let dir = temp_dir();
    let mut state = HashState {
        version: 42,
        hash: [9; 128],
        ..HashState::default()
    };
    state.index_value_map.insert("idx-b".into(), vec![2]);
    state.index_value_map.insert("idx-a".into(), vec![1]);
    state.mac_mismatch_fatal = true;
    let written = state.clone();
    let mac = |i: u8, v: u8| AppStateMutationMAC {
        index_mac: vec![i; 32],
        value_mac: vec![v],
    };

    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        let key = |ts| AppStateSyncKey {
            key_data: vec![1, 2],
            fingerprint: vec![3],
            timestamp: ts,
        };
        s.set_sync_key(b"key-1", key(100)).await.unwrap();
        s.set_sync_key(b"key-2", key(200)).await.unwrap();
        s.set_version("regular", written).await.unwrap();
        s.put_mutation_macs("regular", 1, &[mac(1, 10), mac(2, 20), mac(3, 30)])
            .await
            .unwrap();
        s.put_mutation_macs("critical", 1, &[mac(1, 99)])
            .await
            .unwrap();
        s.delete_mutation_macs("regular", &[vec![2; 32]])
            .await
            .unwrap();
    })
    .await;

    let key = s.get_sync_key(b"key-1").await.unwrap().unwrap();
    assert_eq!(
        (key.key_data, key.fingerprint, key.timestamp),
        (vec![1, 2], vec![3], 100)
    );
    assert!(s.get_sync_key(b"key-3").await.unwrap().is_none());
    assert_eq!(
        s.get_latest_sync_key_id().await.unwrap().as_deref(),
        Some(&b"key-2"[..])
    );

    let loaded = s.get_version("regular").await.unwrap();
    assert_eq!(loaded.version, 42);
    assert_eq!(loaded.hash, [9; 128]);
    assert_eq!(loaded.index_value_map, state.index_value_map);
    assert!(loaded.mac_mismatch_fatal);

    assert_eq!(
        s.get_mutation_mac("regular", &[1; 32]).await.unwrap(),
        Some(vec![10])
    );
    assert_eq!(s.get_mutation_mac("regular", &[2; 32]).await.unwrap(), None);
    let found = s
        .get_mutation_macs("regular", &[[1; 32], [2; 32], [3; 32]])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&[3; 32]], vec![30]);

    s.clear_mutation_macs("regular").await.unwrap();
    assert!(
        s.get_mutation_mac("regular", &[1; 32])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_mutation_mac("regular", &[3; 32])
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.get_mutation_mac("critical", &[1; 32]).await.unwrap(),
        Some(vec![99]),
        "clearing one collection must keep the others"
    );
}

#[tokio::test]
async fn equal_app_state_versions_encode_to_equal_bytes() {
    let mut a = HashState::default();
    let mut b = HashState::default();
    for i in 0..50 {
        a.index_value_map.insert(format!("k{i}"), vec![i]);
    }
    for i in (0..50).rev() {
        b.index_value_map.insert(format!("k{i}"), vec![i]);
    }
    let encode =
        |s: &HashState| super::codec::encode(&super::records::AppStateVersion::from(s)).unwrap();
    assert_eq!(encode(&a), encode(&b));
}

// ---------------------------------------------------------------------------
// ProtocolStore
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sender_key_device_tracking() {
    let dir = temp_dir();
    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        s.set_sender_key_status("g1@g.us", &[("d1", true), ("d2", false)])
            .await
            .unwrap();
        s.set_sender_key_status("g1@g.us", &[("d2", true)])
            .await
            .unwrap();
        s.set_sender_key_status("g2@g.us", &[("d1", true), ("d3", true)])
            .await
            .unwrap();
        // A group whose JID extends another's must stay separate.
        s.set_sender_key_status("g1@g.usx", &[("d9", true)])
            .await
            .unwrap();
    })
    .await;

    let mut g1 = s.get_sender_key_devices("g1@g.us").await.unwrap();
    g1.sort();
    assert_eq!(g1, vec![("d1".into(), true), ("d2".into(), true)]);

    s.delete_sender_key_device_rows(&["d1"]).await.unwrap();
    assert_eq!(
        s.get_sender_key_devices("g1@g.us").await.unwrap(),
        vec![("d2".into(), true)]
    );
    assert_eq!(
        s.get_sender_key_devices("g2@g.us").await.unwrap(),
        vec![("d3".into(), true)]
    );

    s.clear_sender_key_devices("g1@g.us").await.unwrap();
    assert!(
        s.get_sender_key_devices("g1@g.us")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.get_sender_key_devices("g1@g.usx").await.unwrap().len(), 1);
    assert_eq!(s.get_sender_key_devices("g2@g.us").await.unwrap().len(), 1);

    s.clear_all_sender_key_devices().await.unwrap();
    assert!(
        s.get_sender_key_devices("g2@g.us")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.get_sender_key_devices("g1@g.usx")
            .await
            .unwrap()
            .is_empty()
    );
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

#[tokio::test]
async fn lid_mappings_keep_the_reverse_index_in_step() {
    let dir = temp_dir();
    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        s.put_lid_mapping(&mapping("100", "5511", 10))
            .await
            .unwrap();
        s.put_lid_mappings(&[mapping("200", "5522", 20), mapping("300", "5533", 30)])
            .await
            .unwrap();
        // LID 100 moves to another phone number: the old reverse entry goes.
        s.put_lid_mapping(&mapping("100", "5599", 40))
            .await
            .unwrap();
    })
    .await;

    let m = s.get_lid_mapping("100").await.unwrap().unwrap();
    assert_eq!(
        (
            m.phone_number.as_str(),
            m.created_at,
            m.updated_at,
            m.learning_source.as_str()
        ),
        ("5599", 40, 41, "usync")
    );
    assert!(s.get_pn_mapping("5511").await.unwrap().is_none());
    assert_eq!(s.get_pn_mapping("5599").await.unwrap().unwrap().lid, "100");
    assert_eq!(s.get_pn_mapping("5533").await.unwrap().unwrap().lid, "300");
    assert!(s.get_lid_mapping("999").await.unwrap().is_none());
    let mut all: Vec<String> = s
        .get_all_lid_mappings()
        .await
        .unwrap()
        .into_iter()
        .map(|m| format!("{}={}", m.lid, m.phone_number))
        .collect();
    all.sort();
    assert_eq!(all, vec!["100=5599", "200=5522", "300=5533"]);
}

#[tokio::test]
async fn base_keys_device_lists_and_group_metadata() {
    let dir = temp_dir();
    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        s.save_base_key("a@s.whatsapp.net", "m1", b"base")
            .await
            .unwrap();
        s.save_base_key("a@s.whatsapp.net", "m2", b"other")
            .await
            .unwrap();
        s.delete_base_key("a@s.whatsapp.net", "m2").await.unwrap();

        s.update_device_list(DeviceListRecord {
            user: "5511".into(),
            devices: vec![
                DeviceInfo::new(0, None),
                DeviceInfo::new(7, Some(3)).with_hosting(true),
            ],
            timestamp: 123,
            phash: Some("2:abc".into()),
            raw_id: Some(77),
        })
        .await
        .unwrap();
        s.update_device_lists(vec![
            DeviceListRecord {
                user: "5522".into(),
                devices: vec![DeviceInfo::new(0, None)],
                timestamp: 5,
                phash: None,
                raw_id: None,
            },
            DeviceListRecord {
                user: "5533".into(),
                devices: vec![],
                timestamp: 6,
                phash: None,
                raw_id: None,
            },
        ])
        .await
        .unwrap();
        s.delete_devices("5533").await.unwrap();

        s.put_group_metadata("g@g.us", b"blob-v1").await.unwrap();
        s.put_group_metadata("g@g.us", b"blob-v2").await.unwrap();
        s.put_group_metadata("h@g.us", b"gone").await.unwrap();
        s.delete_group_metadata("h@g.us").await.unwrap();
    })
    .await;

    assert!(
        s.has_same_base_key("a@s.whatsapp.net", "m1", b"base")
            .await
            .unwrap()
    );
    assert!(
        !s.has_same_base_key("a@s.whatsapp.net", "m1", b"nope")
            .await
            .unwrap()
    );
    assert!(
        !s.has_same_base_key("a@s.whatsapp.net", "m2", b"other")
            .await
            .unwrap()
    );

    let list = s.get_devices("5511").await.unwrap().unwrap();
    assert_eq!(
        (list.timestamp, list.phash.as_deref(), list.raw_id),
        (123, Some("2:abc"), Some(77))
    );
    let devices: Vec<_> = list
        .devices
        .iter()
        .map(|d| (d.device_id, d.key_index, d.is_hosted))
        .collect();
    assert_eq!(devices, vec![(0, None, false), (7, Some(3), true)]);
    let plain = s.get_devices("5522").await.unwrap().unwrap();
    assert_eq!((plain.phash, plain.raw_id), (None, None));
    assert!(s.get_devices("5533").await.unwrap().is_none());

    assert_eq!(
        s.get_group_metadata("g@g.us").await.unwrap().as_deref(),
        Some(&b"blob-v2"[..])
    );
    assert!(s.get_group_metadata("h@g.us").await.unwrap().is_none());
}

#[tokio::test]
async fn tc_tokens_merge_like_the_reference() {
    let dir = temp_dir();
    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        // Placeholder from the issuance path, then a real token keeps its bucket.
        s.touch_tc_token_sender_timestamp("u1", 1000).await.unwrap();
        s.put_tc_token(
            "u1",
            &TcTokenEntry {
                token: vec![7, 8, 9],
                token_timestamp: 2000,
                sender_timestamp: None,
            },
        )
        .await
        .unwrap();
        s.touch_tc_token_sender_timestamp("u1", 3000).await.unwrap();
        // The sender bucket only moves forward.
        s.touch_tc_token_sender_timestamp("u1", 2500).await.unwrap();

        // Received tokens: newer wins, placeholders never block, bucket kept.
        s.touch_tc_token_sender_timestamp("u2", 5000).await.unwrap();
        s.store_received_tc_token("u2", &[1, 2, 3], 4000)
            .await
            .unwrap();
        s.store_received_tc_token("c", &[1, 1, 1], 5000)
            .await
            .unwrap();
        s.store_received_tc_token("c", &[2, 2, 2], 3000)
            .await
            .unwrap();
        s.store_received_tc_token("fresh", &[9], 4000)
            .await
            .unwrap();
        s.put_tc_token(
            "deleted",
            &TcTokenEntry {
                token: vec![1],
                token_timestamp: 1,
                sender_timestamp: None,
            },
        )
        .await
        .unwrap();
        s.delete_tc_token("deleted").await.unwrap();
    })
    .await;

    let u1 = s.get_tc_token("u1").await.unwrap().unwrap();
    assert_eq!(
        (u1.token, u1.token_timestamp, u1.sender_timestamp),
        (vec![7, 8, 9], 2000, Some(3000))
    );
    let u2 = s.get_tc_token("u2").await.unwrap().unwrap();
    assert_eq!(
        (u2.token, u2.token_timestamp, u2.sender_timestamp),
        (vec![1, 2, 3], 4000, Some(5000))
    );
    let c = s.get_tc_token("c").await.unwrap().unwrap();
    assert_eq!((c.token, c.token_timestamp), (vec![1, 1, 1], 5000));
    s.store_received_tc_token("c", &[3, 3, 3], 7000)
        .await
        .unwrap();
    assert_eq!(
        s.get_tc_token("c").await.unwrap().unwrap().token,
        vec![3, 3, 3]
    );
    assert_eq!(
        s.get_tc_token("fresh")
            .await
            .unwrap()
            .unwrap()
            .sender_timestamp,
        None
    );
    assert!(s.get_tc_token("deleted").await.unwrap().is_none());
    let mut jids = s.get_all_tc_token_jids().await.unwrap();
    jids.sort();
    assert_eq!(jids, vec!["c", "fresh", "u1", "u2"]);
}

#[tokio::test]
async fn tc_token_prune_respects_both_windows() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    let entry = |token: Vec<u8>, token_timestamp, sender_timestamp| TcTokenEntry {
        token,
        token_timestamp,
        sender_timestamp,
    };
    s.touch_tc_token_sender_timestamp("recent_ph", 2500)
        .await
        .unwrap();
    s.touch_tc_token_sender_timestamp("stale_ph", 100)
        .await
        .unwrap();
    s.put_tc_token("expired_tok_live_sender", &entry(vec![1], 1, Some(2500)))
        .await
        .unwrap();
    s.put_tc_token("orphan_expired", &entry(vec![2], 1, None))
        .await
        .unwrap();
    s.put_tc_token("fresh_tok", &entry(vec![3], 5000, None))
        .await
        .unwrap();

    assert_eq!(s.delete_expired_tc_tokens(1000, 2000).await.unwrap(), 2);
    let mut left = s.get_all_tc_token_jids().await.unwrap();
    left.sort();
    assert_eq!(
        left,
        vec!["expired_tok_live_sender", "fresh_tok", "recent_ph"]
    );
}

#[tokio::test]
async fn sent_messages_are_taken_once_and_expire() {
    let dir = temp_dir();
    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        s.store_sent_message("chat@g.us", "m1", b"p1")
            .await
            .unwrap();
        s.store_sent_message("chat@g.us", "m2", b"p2")
            .await
            .unwrap();
        s.store_sent_message("chat@g.us", "m2", b"p2-again")
            .await
            .unwrap();
        s.store_sent_message("other@s.whatsapp.net", "m1", b"p3")
            .await
            .unwrap();
    })
    .await;

    assert_eq!(
        s.take_sent_message("chat@g.us", "m1").await.unwrap(),
        Some(b"p1".to_vec())
    );
    assert_eq!(s.take_sent_message("chat@g.us", "m1").await.unwrap(), None);
    assert_eq!(
        s.take_sent_message("chat@g.us", "m2").await.unwrap(),
        Some(b"p2-again".to_vec())
    );
    // Nothing is older than a cutoff in the past; everything is older than one
    // in the future.
    assert_eq!(s.delete_expired_sent_messages(0).await.unwrap(), 0);
    assert_eq!(s.delete_expired_sent_messages(i64::MAX).await.unwrap(), 1);
    assert!(
        s.take_sent_message("other@s.whatsapp.net", "m1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.tree(Kind::SentByTime).is_empty(),
        "time index must follow the rows"
    );
}

#[tokio::test]
async fn sent_messages_are_bounded_oldest_first() {
    use super::backend::MAX_SENT_MESSAGES;
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    for i in 0..MAX_SENT_MESSAGES {
        s.store_sent_message("chat@g.us", &format!("m{i}"), b"p")
            .await
            .unwrap();
    }
    // Make the first 16 strictly older, as if sent a while ago.
    let rows = s.tree(Kind::SentMessages);
    let by_time = s.tree(Kind::SentByTime);
    for i in 0..16 {
        let key = super::keys::composite(&[b"chat@g.us", format!("m{i}").as_bytes()]);
        let old: super::records::SentMessage =
            super::codec::decode(&rows.get(&key).unwrap().unwrap()).unwrap();
        let mut old_index = super::keys::timestamp(old.timestamp).to_vec();
        old_index.extend_from_slice(&key);
        by_time.remove(old_index).unwrap();
        let mut new_index = super::keys::timestamp(500).to_vec();
        new_index.extend_from_slice(&key);
        by_time
            .insert(
                new_index,
                super::codec::encode(&super::records::Marker).unwrap(),
            )
            .unwrap();
        let aged = super::records::SentMessage {
            payload: b"p".to_vec(),
            timestamp: 500,
        };
        rows.insert(key, super::codec::encode(&aged).unwrap())
            .unwrap();
    }

    s.store_sent_message("chat@g.us", "trigger", b"p")
        .await
        .unwrap();
    assert_eq!(rows.len(), MAX_SENT_MESSAGES * 3 / 4 + 1);
    assert_eq!(by_time.len(), rows.len());
    for i in 0..16 {
        assert!(
            s.take_sent_message("chat@g.us", &format!("m{i}"))
                .await
                .unwrap()
                .is_none(),
            "m{i} is the oldest and must have been evicted"
        );
    }
    assert!(
        s.take_sent_message("chat@g.us", "trigger")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn pending_inbound_buffer() {
    let dir = temp_dir();
    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        s.store_pending_inbound("c", "s", "1", b"one")
            .await
            .unwrap();
        s.store_pending_inbound_batch(&[
            PendingInboundRow {
                chat: "c",
                sender: "s",
                id: "2",
                message: b"two",
            },
            PendingInboundRow {
                chat: "c",
                sender: "t",
                id: "1",
                message: b"three",
            },
        ])
        .await
        .unwrap();
    })
    .await;

    assert_eq!(
        s.get_pending_inbound("c", "s", "1").await.unwrap(),
        Some(b"one".to_vec())
    );
    assert_eq!(
        s.get_pending_inbound("c", "t", "1").await.unwrap(),
        Some(b"three".to_vec())
    );
    assert!(
        s.get_pending_inbound("c", "s", "3")
            .await
            .unwrap()
            .is_none()
    );
    s.delete_pending_inbound("c", "s", "1").await.unwrap();
    assert!(
        s.get_pending_inbound("c", "s", "1")
            .await
            .unwrap()
            .is_none()
    );
    s.delete_pending_inbound_batch(&[PendingInboundKey {
        chat: "c",
        sender: "s",
        id: "2",
    }])
    .await
    .unwrap();
    assert!(
        s.get_pending_inbound("c", "s", "2")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.delete_expired_pending_inbound(0).await.unwrap(), 0);
    assert_eq!(s.delete_expired_pending_inbound(i64::MAX).await.unwrap(), 1);
    assert!(
        s.get_pending_inbound("c", "t", "1")
            .await
            .unwrap()
            .is_none()
    );
}

// ---------------------------------------------------------------------------
// MsgSecretStore
// ---------------------------------------------------------------------------

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

#[tokio::test]
async fn msg_secrets_round_trip_keyed_by_all_three_parts() {
    let dir = temp_dir();
    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        s.put_msg_secret("chatA", "senderX", "M1", &[1; 32])
            .await
            .unwrap();
        s.put_msg_secret("chatA", "senderX", "M2", &[2; 32])
            .await
            .unwrap();
        s.put_msg_secret("chatA", "senderY", "M1", &[3; 32])
            .await
            .unwrap();
        s.put_msg_secret("chatB", "senderX", "M1", &[4; 32])
            .await
            .unwrap();
        let stored = s
            .put_msg_secrets(vec![
                secret_entry("B1", 1, 0, 0),
                secret_entry("B2", 2, 0, 0),
                secret_entry("B1", 9, 0, 0),
            ])
            .await
            .unwrap();
        assert_eq!(stored, 3);
    })
    .await;

    for (chat, sender, id, fill) in [
        ("chatA", "senderX", "M1", 1u8),
        ("chatA", "senderX", "M2", 2),
        ("chatA", "senderY", "M1", 3),
        ("chatB", "senderX", "M1", 4),
        ("chat", "sender", "B1", 9),
        ("chat", "sender", "B2", 2),
    ] {
        assert_eq!(
            s.get_msg_secret(chat, sender, id).await.unwrap(),
            Some(vec![fill; 32]),
            "{chat}/{sender}/{id}"
        );
    }
    assert!(
        s.get_msg_secret("chatA", "senderX", "M9")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn msg_secret_deadlines_merge_and_expire() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    s.put_msg_secrets(vec![
        secret_entry("OLD", 1, 100, 50),
        secret_entry("EXTENDED", 2, 100, 0),
        secret_entry("NEVER", 3, 100, 0),
        secret_entry("LATE", 4, 1000, 0),
    ])
    .await
    .unwrap();
    // A redelivery never shortens a window; 0 means never; a 0 parent time
    // never clobbers a known one.
    s.put_msg_secrets(vec![
        secret_entry("EXTENDED", 5, 500, 0),
        secret_entry("NEVER", 3, 0, 70),
        secret_entry("LATE", 4, 200, 0),
        secret_entry("OLD", 1, 50, 0),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.get_msg_secret_with_ts("chat", "sender", "OLD")
            .await
            .unwrap(),
        Some((vec![1; 32], 50))
    );
    assert_eq!(
        s.get_msg_secret_with_ts("chat", "sender", "NEVER")
            .await
            .unwrap(),
        Some((vec![3; 32], 70))
    );

    // Deadline at or before the cutoff goes.
    assert_eq!(s.delete_expired_msg_secrets(100).await.unwrap(), 1);
    assert!(
        s.get_msg_secret("chat", "sender", "OLD")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.get_msg_secret("chat", "sender", "EXTENDED")
            .await
            .unwrap(),
        Some(vec![5; 32])
    );
    assert_eq!(s.delete_expired_msg_secrets(999).await.unwrap(), 1);
    assert!(
        s.get_msg_secret("chat", "sender", "EXTENDED")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_msg_secret("chat", "sender", "LATE")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(s.delete_expired_msg_secrets(i64::MAX).await.unwrap(), 1);
    assert!(
        s.get_msg_secret("chat", "sender", "NEVER")
            .await
            .unwrap()
            .is_some()
    );
    assert!(s.tree(Kind::MsgSecretExpiry).is_empty());
}

// ---------------------------------------------------------------------------
// Verification and snapshots
// ---------------------------------------------------------------------------

#[test]
fn tree_kinds_index_their_own_slot() {
    for (i, kind) in Kind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, i, "{kind:?}");
    }
}

async fn populate(s: &SledBackend) {
    s.save(&registered_device()).await.unwrap();
    s.create().await.unwrap();
    s.put_session("a@s.whatsapp.net", b"session").await.unwrap();
    s.put_identity("a@s.whatsapp.net", [1; 32]).await.unwrap();
    s.store_prekey(1, b"pk", true).await.unwrap();
    s.store_signed_prekey(1, b"spk").await.unwrap();
    s.put_sender_key("g@g.us::a", b"sk").await.unwrap();
    s.set_sync_key(b"k", AppStateSyncKey::default())
        .await
        .unwrap();
    s.set_version("regular", HashState::default())
        .await
        .unwrap();
    s.put_mutation_macs(
        "regular",
        1,
        &[AppStateMutationMAC {
            index_mac: vec![1],
            value_mac: vec![2],
        }],
    )
    .await
    .unwrap();
    s.set_sender_key_status("g@g.us", &[("d", true)])
        .await
        .unwrap();
    s.put_lid_mapping(&mapping("100", "5511", 1)).await.unwrap();
    s.save_base_key("a", "m", b"b").await.unwrap();
    s.update_device_list(DeviceListRecord {
        user: "5511".into(),
        devices: vec![DeviceInfo::new(0, None)],
        timestamp: 1,
        phash: None,
        raw_id: None,
    })
    .await
    .unwrap();
    s.put_group_metadata("g@g.us", b"meta").await.unwrap();
    s.store_received_tc_token("u", b"t", 5).await.unwrap();
    s.store_sent_message("c", "m", b"p").await.unwrap();
    s.store_pending_inbound("c", "s", "i", b"m").await.unwrap();
    s.put_msg_secrets(vec![secret_entry("m", 1, 99, 1)])
        .await
        .unwrap();
}

#[tokio::test]
async fn verify_decodes_every_tree_and_reports_damage() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    let empty = s.verify().unwrap();
    assert!(empty.is_valid() && !empty.has_device && empty.records == 0);

    populate(&s).await;
    let report = s.verify().unwrap();
    assert!(report.is_valid(), "{:?}", report.problems);
    assert!(report.has_device && report.registered);
    let populated_trees = Kind::ALL.iter().filter(|k| !s.tree(**k).is_empty()).count();
    assert_eq!(
        populated_trees,
        Kind::ALL.len(),
        "populate() must touch every tree"
    );
    assert!(report.records >= Kind::ALL.len() as u64);

    s.tree(Kind::TcTokens).insert("u", vec![1u8, 0xFF]).unwrap();
    s.tree(Kind::Meta).insert("device", vec![]).unwrap();
    let report = s.verify().unwrap();
    assert!(!report.is_valid());
    assert_eq!(report.problem_count, 2);
    assert!(report.has_device && !report.registered);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("tc_tokens \"u\"")),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("meta \"device\"")),
        "{:?}",
        report.problems
    );
}

#[tokio::test]
async fn snapshot_restores_an_account_exactly() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    populate(&s).await;
    let snapshot = s.snapshot().unwrap();
    assert_eq!(snapshot.account(), "sales");
    assert_eq!(
        snapshot.jid().as_deref(),
        Some("15551234567:12@s.whatsapp.net")
    );
    assert!(snapshot.verify().is_valid());
    assert_eq!(snapshot.size_bytes(), s.size_bytes());
    // Unchanged state gives identical bytes.
    let bytes = snapshot.to_bytes().unwrap();
    assert_eq!(s.snapshot().unwrap().to_bytes().unwrap(), bytes);

    // Damage and extra state after the snapshot are all rolled back.
    s.put_session("a@s.whatsapp.net", b"newer").await.unwrap();
    s.put_session("late@s.whatsapp.net", b"late").await.unwrap();
    s.clear().unwrap();
    s.put_session("after-clear@s.whatsapp.net", b"x")
        .await
        .unwrap();

    let restored = super::AccountSnapshot::from_bytes(&bytes).unwrap();
    s.restore(&restored).unwrap();
    assert_eq!(s.snapshot().unwrap(), snapshot);
    assert!(s.has_credentials());
    assert!(
        s.get_session("after-clear@s.whatsapp.net")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.get_session("a@s.whatsapp.net").await.unwrap().unwrap(),
        Bytes::from_static(b"session")
    );
    assert_eq!(
        s.take_sent_message("c", "m").await.unwrap(),
        Some(b"p".to_vec())
    );

    // Another account (or host) can take the snapshot over.
    let moved = db.account("moved").unwrap();
    moved.restore(&restored).unwrap();
    assert_eq!(moved.jid(), s.jid());
    drop((s, moved, db));
    let db = open(dir.path());
    assert!(db.account("moved").unwrap().has_credentials());
}

#[tokio::test]
async fn damaged_snapshot_is_refused_and_changes_nothing() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    populate(&s).await;
    let before = s.snapshot().unwrap();

    let mut bytes = before.to_bytes().unwrap();
    let cut = bytes.len() / 2;
    bytes.truncate(cut);
    assert!(super::AccountSnapshot::from_bytes(&bytes).is_err());

    // A snapshot that parses but carries an undecodable record.
    let other = db.account("other").unwrap();
    other
        .tree(Kind::Sessions)
        .insert("x", vec![1u8, 0xFF])
        .unwrap();
    let bad = other.snapshot().unwrap();
    assert!(!bad.verify().is_valid());
    let err = s.restore(&bad).unwrap_err();
    assert!(err.to_string().contains("damaged records"), "{err}");
    assert_eq!(s.snapshot().unwrap(), before);
}

// ---------------------------------------------------------------------------
// Crashes and concurrency
// ---------------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the files taken while the database is still open is what a
/// kill -9 leaves behind: no clean shutdown, no final flush.
#[tokio::test]
async fn saved_credentials_survive_a_crash() {
    let dir = temp_dir();
    let live = dir.path().join("live");
    let db = open(&live);
    let device = registered_device();
    db.account("sales").unwrap().save(&device).await.unwrap();

    let crashed = dir.path().join("crashed");
    copy_dir(&live, &crashed);
    let recovered = open(&crashed);
    let acct = recovered.account("sales").unwrap();
    assert!(acct.has_credentials());
    assert_eq!(
        device_json(&acct.load().await.unwrap().unwrap()),
        device_json(&device)
    );
}

#[test]
fn second_open_of_the_same_directory_is_refused_with_advice() {
    let dir = temp_dir();
    let _first = open(dir.path());
    let err = StateDb::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(msg.contains("another walinkd"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tc_token_writers_converge() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    let mut tasks = Vec::new();
    for i in 1..=50i64 {
        let toucher = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            toucher.touch_tc_token_sender_timestamp("u", i * 10).await
        }));
        let receiver = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            receiver
                .store_received_tc_token("u", &i.to_be_bytes(), i * 10)
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let entry = s.get_tc_token("u").await.unwrap().unwrap();
    assert_eq!(
        entry.sender_timestamp,
        Some(500),
        "sender bucket is the max"
    );
    assert_eq!(entry.token_timestamp, 500, "newest token wins");
    assert_eq!(entry.token, 50i64.to_be_bytes().to_vec());
}
