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
