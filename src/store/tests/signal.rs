use super::*;

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
        s.get::<crate::store::records::PreKey>(Kind::PreKeys, &crate::store::keys::id(id))
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
