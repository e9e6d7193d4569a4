use super::*;

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
        .put(
            Kind::Sessions,
            b"k",
            &crate::store::records::Blob(vec![7; 4096]),
        )
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
        acct.store_pending_inbound("c", "s", "m", &[tag])
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
    a.clear().await.unwrap();
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
    assert!(
        a.take_sent_message("c@s.whatsapp.net", "m")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(db.messages.account("a").unwrap().sent_copy_count().await, 0);
    assert_eq!(a.get_pending_inbound("c", "s", "m").await.unwrap(), None);
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
    assert_eq!(
        b.get_pending_inbound("c", "s", "m").await.unwrap(),
        Some(vec![2])
    );
    assert!(b.size_bytes() > 0);

    // The wipe is durable, and the other account's data too.
    drop((a, b, db));
    let db = open(dir.path());
    let (a, b) = (db.account("a").unwrap(), db.account("b").unwrap());
    assert!(!a.has_credentials());
    assert!(a.get_msg_secret("c", "s", "m").await.unwrap().is_none());
    assert!(b.has_credentials());
    assert_eq!(
        b.get_msg_secret("c", "s", "m").await.unwrap(),
        Some(vec![2; 32])
    );
}

/// A state directory from before the library's records moved to
/// `messages.db` has them in sled trees: they are dropped at open, and
/// the session is as it was.
#[tokio::test]
async fn an_old_state_dir_loses_its_per_message_trees_and_keeps_its_session() {
    use crate::store::backend::LEGACY_PER_MESSAGE_TREES;
    let dir = temp_dir();
    let device = registered_device();
    {
        let db = open(dir.path());
        let s = db.account("sales").unwrap();
        super::snapshot::populate(&s).await;
        s.save(&device).await.unwrap();
        db.flush().unwrap();
    }
    let session = {
        let db = open_state(dir.path());
        let s = db.account("sales").unwrap();
        let session = s.snapshot().unwrap();
        for name in LEGACY_PER_MESSAGE_TREES {
            for account in ["sales", "gone"] {
                let tree = sled_tree(&db, &format!("acct:{account}:{name}"));
                tree.insert(b"c\0m", vec![1u8, 2, 3]).unwrap();
            }
        }
        db.flush().unwrap();
        session
    };

    let db = open(dir.path());
    assert!(
        db.tree_names()
            .iter()
            .all(|name| !LEGACY_PER_MESSAGE_TREES.iter().any(|l| name.ends_with(l))),
        "{:?}",
        db.tree_names()
    );
    let s = db.account("sales").unwrap();
    assert!(s.has_credentials());
    assert_eq!(
        device_json(&s.load().await.unwrap().unwrap()),
        device_json(&device)
    );
    assert_eq!(s.snapshot().unwrap(), session);
    assert!(s.verify().unwrap().is_valid());
    assert_eq!(
        s.get_session("a@s.whatsapp.net").await.unwrap().unwrap(),
        Bytes::from_static(b"session")
    );
    s.store_sent_message("c", "m", b"new").await.unwrap();
    assert_eq!(
        s.take_sent_message("c", "m").await.unwrap(),
        Some(b"new".to_vec())
    );
    assert_eq!(s.get_pending_inbound("c", "s", "m").await.unwrap(), None);
    s.store_pending_inbound("c", "s", "m", b"new")
        .await
        .unwrap();
    assert_eq!(
        s.get_pending_inbound("c", "s", "m").await.unwrap(),
        Some(b"new".to_vec())
    );
}

fn sled_tree(db: &StateDb, name: &str) -> sled::Tree {
    db.raw().open_tree(name).unwrap()
}

#[tokio::test]
async fn damaged_value_names_account_tree_and_key() {
    let dir = temp_dir();
    let db = open(dir.path());
    let acct = db.account("sales").unwrap();
    acct.put_raw(Kind::Sessions, b"peer@s.whatsapp.net", vec![1u8, 0xFF]);
    let err = acct.get_session("peer@s.whatsapp.net").await.unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("sales"), "{chain}");
    assert!(chain.contains("sessions"), "{chain}");
    assert!(chain.contains("peer@s.whatsapp.net"), "{chain}");

    acct.put_raw(Kind::Meta, b"device", vec![9u8, 1, 2]);
    assert!(!acct.has_credentials());
    let Err(err) = acct.load_device() else {
        panic!("a device record with an unknown schema version must not load");
    };
    let msg = err.to_string();
    assert!(msg.contains("schema version 9"), "{msg}");
    assert!(msg.contains("restore a backup"), "{msg}");
}

/// A state database in the layout walinkd kept until the trees were
/// shared (one tree per account and kind): every account comes back whole
/// (sealed values too, as stored), the old trees are gone, and opening it
/// again changes nothing.
#[tokio::test]
async fn a_state_db_with_a_tree_per_account_and_kind_is_adopted_whole() {
    let source = temp_dir();
    let mut sessions = Vec::new();
    {
        let db = open(source.path());
        for name in ["sales", "sales2"] {
            let s = db.account(name).unwrap();
            super::snapshot::populate(&s).await;
            s.put_session(&format!("{name}@s.whatsapp.net"), b"own")
                .await
                .unwrap();
            sessions.push(s.snapshot().unwrap());
        }
    }
    let dir = temp_dir();
    {
        let raw = sled::open(dir.path()).unwrap();
        for snapshot in &sessions {
            for kind in Kind::ALL {
                let tree = raw
                    .open_tree(format!("acct:{}:{}", snapshot.account(), kind.name()))
                    .unwrap();
                for (key, value) in snapshot.rows(kind) {
                    tree.insert(key, value).unwrap();
                }
            }
        }
        raw.flush().unwrap();
    }
    for _ in 0..2 {
        let db = open(dir.path());
        assert_eq!(db.tree_names(), super::snapshot::shared_trees());
        assert_eq!(db.account_names(), vec!["sales", "sales2"]);
        for snapshot in &sessions {
            let s = db.account(snapshot.account()).unwrap();
            assert!(s.has_credentials());
            assert_eq!(&s.snapshot().unwrap(), snapshot);
            assert!(s.verify().unwrap().is_valid());
        }
    }
}

/// Accounts share the trees, not their records: one whose name starts
/// another's sees none of the other's, and wiping one leaves the other.
#[tokio::test]
async fn accounts_in_the_shared_trees_see_and_wipe_only_their_own() {
    let dir = temp_dir();
    let db = open(dir.path());
    let a = db.account("a").unwrap();
    let ab = db.account("ab").unwrap();
    super::snapshot::populate(&ab).await;
    let before = ab.snapshot().unwrap();
    assert!(!a.has_credentials());
    assert_eq!(a.get_session("a@s.whatsapp.net").await.unwrap(), None);
    assert_eq!(a.get_max_prekey_id().await.unwrap(), 0);
    assert_eq!(a.verify().unwrap().records, 0);
    assert_eq!(a.size_bytes(), 0);

    super::snapshot::populate(&a).await;
    a.put_session("only-a@s.whatsapp.net", b"x").await.unwrap();
    assert!(!ab.has_session("only-a@s.whatsapp.net").await.unwrap());
    assert!(a.has_session("only-a@s.whatsapp.net").await.unwrap());
    a.clear().await.unwrap();
    assert_eq!(a.verify().unwrap().records, 0);
    assert_eq!(ab.snapshot().unwrap(), before);
    assert!(ab.has_credentials());
}
