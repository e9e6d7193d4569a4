use super::*;

#[test]
fn tree_kinds_index_their_own_slot() {
    for (i, kind) in Kind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, i, "{kind:?}");
    }
}

pub(super) async fn populate(s: &SledBackend) {
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
}

/// What the library keeps per message, in `messages.db`: not part of a
/// session, so [`populate`] leaves it out.
async fn keep_library_records(s: &SledBackend) {
    s.store_sent_message("c", "m", b"p").await.unwrap();
    s.put_msg_secrets(vec![secret_entry("m", 1, 99, 1)])
        .await
        .unwrap();
    s.store_pending_inbound("c", "s", "i", b"m").await.unwrap();
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
    let populated_trees = Kind::ALL
        .iter()
        .filter(|k| s.rows(**k, &[]).next().is_some())
        .count();
    assert_eq!(
        populated_trees,
        Kind::ALL.len(),
        "populate() must touch every tree"
    );
    assert!(report.records >= Kind::ALL.len() as u64);
    // What grows with every message is not in sled: verifying reads the
    // session only.
    keep_library_records(&s).await;
    assert_eq!(s.verify().unwrap().records, report.records);

    s.put_raw(Kind::TcTokens, b"u", vec![1u8, 0xFF]);
    s.put_raw(Kind::Meta, b"device", vec![]);
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
    keep_library_records(&s).await;
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
    s.clear().await.unwrap();
    s.put_session("after-clear@s.whatsapp.net", b"x")
        .await
        .unwrap();

    let restored = crate::store::AccountSnapshot::from_bytes(&bytes).unwrap();
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
    // The library's per-message records are not part of a generation:
    // `clear` wiped them and the restore left them so.
    assert_eq!(s.take_sent_message("c", "m").await.unwrap(), None);
    assert_eq!(s.get_msg_secret("chat", "sender", "m").await.unwrap(), None);
    assert_eq!(s.get_pending_inbound("c", "s", "i").await.unwrap(), None);

    // Another account (or host) can take the snapshot over.
    let moved = db.account("moved").unwrap();
    moved.restore(&restored).unwrap();
    assert_eq!(moved.jid(), s.jid());
    drop((s, moved, db));
    let db = open(dir.path());
    assert!(db.account("moved").unwrap().has_credentials());
}

#[tokio::test]
async fn a_generation_carries_the_session_and_a_restore_keeps_the_per_message_records() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    populate(&s).await;
    keep_library_records(&s).await;
    let snapshot = s.snapshot().unwrap();
    for kind in Kind::ALL {
        assert!(
            snapshot.rows(kind).count() > 0,
            "{kind:?} is in the generation"
        );
    }
    assert_eq!(
        snapshot.tree_names().len(),
        Kind::ALL.len(),
        "and nothing else"
    );
    assert!(snapshot.verify().is_valid());
    assert_eq!(snapshot.size_bytes(), s.size_bytes());

    s.put_session("a@s.whatsapp.net", b"newer").await.unwrap();
    s.restore(&snapshot).unwrap();
    assert_eq!(
        s.get_session("a@s.whatsapp.net").await.unwrap().unwrap(),
        Bytes::from_static(b"session")
    );
    assert_eq!(
        s.take_sent_message("c", "m").await.unwrap(),
        Some(b"p".to_vec()),
        "the library's copy of a send outlives a restore"
    );
    assert!(
        s.get_msg_secret("chat", "sender", "m")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        s.get_pending_inbound("c", "s", "i").await.unwrap(),
        Some(b"m".to_vec()),
        "a buffered received message outlives a restore"
    );
}

/// A generation taken while the library's records were still in sled
/// carries their trees (even a damaged row): it is still good, and a
/// restore brings back its session and nothing of those.
#[tokio::test]
async fn a_generation_with_the_old_per_message_trees_restores_its_session() {
    use crate::store::backend::LEGACY_PER_MESSAGE_TREES;
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    populate(&s).await;
    let mut old = s.snapshot().unwrap();
    for name in LEGACY_PER_MESSAGE_TREES {
        old = old.with_tree(name, vec![(b"c\0m".to_vec(), vec![1u8, 0xFF])]);
    }
    let old = crate::store::AccountSnapshot::from_bytes(&old.to_bytes().unwrap()).unwrap();
    let report = old.verify();
    assert!(report.is_valid(), "{:?}", report.problems);

    s.put_session("a@s.whatsapp.net", b"newer").await.unwrap();
    s.restore(&old).unwrap();
    assert_eq!(
        s.get_session("a@s.whatsapp.net").await.unwrap().unwrap(),
        Bytes::from_static(b"session")
    );
    assert_eq!(s.snapshot().unwrap().tree_names().len(), Kind::ALL.len());
    assert_eq!(s.take_sent_message("c", "m").await.unwrap(), None);
    assert_eq!(s.get_pending_inbound("c", "s", "i").await.unwrap(), None);
    assert_eq!(db.tree_names(), shared_trees());
}

/// The sled trees of a state database, however many accounts it holds.
pub(super) fn shared_trees() -> Vec<String> {
    let mut names: Vec<String> = Kind::ALL
        .iter()
        .map(|k| crate::store::backend::space::tree_name(*k))
        .chain([crate::store::backend::ACCOUNTS_TREE.to_owned()])
        .collect();
    names.sort();
    names
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
    assert!(crate::store::AccountSnapshot::from_bytes(&bytes).is_err());

    // A snapshot that parses but carries an undecodable record.
    let other = db.account("other").unwrap();
    other.put_raw(Kind::Sessions, b"x", vec![1u8, 0xFF]);
    let bad = other.snapshot().unwrap();
    assert!(!bad.verify().is_valid());
    let err = s.restore(&bad).unwrap_err();
    assert!(err.to_string().contains("damaged records"), "{err}");
    assert_eq!(s.snapshot().unwrap(), before);
}
