use super::*;

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
    // Written, then both databases closed and opened again: the copies
    // are in messages.db, committed at its close.
    let (db, s) = write_then_reopen(&dir, "sales", |s| async move {
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
    let store = db.messages.account("sales").unwrap();
    assert_eq!(store.sent_copy_count().await, 3, "a re-put replaces");

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
    assert_eq!(store.sent_copy_count().await, 0);
}

#[tokio::test]
async fn sent_messages_expire_strictly_before_the_cutoff_per_account() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    let store = db.messages.account("sales").unwrap();
    let other = db.messages.account("other").unwrap();
    for (id, at) in [("t100", 100), ("t200", 200), ("t300", 300)] {
        store.keep_sent_copy("c", id, id.into(), at).unwrap();
        other.keep_sent_copy("c", id, id.into(), at).unwrap();
    }
    assert_eq!(s.delete_expired_sent_messages(200).await.unwrap(), 1);
    assert_eq!(s.take_sent_message("c", "t100").await.unwrap(), None);
    assert_eq!(
        s.take_sent_message("c", "t200").await.unwrap(),
        Some(b"t200".to_vec()),
        "a copy taken at the cutoff is not older than it"
    );
    assert_eq!(s.delete_expired_sent_messages(301).await.unwrap(), 1);
    assert_eq!(store.sent_copy_count().await, 0);
    assert_eq!(other.sent_copy_count().await, 3, "another account's stay");
}

#[tokio::test]
async fn sent_messages_are_bounded_oldest_first() {
    use crate::store::messages::MAX_SENT_COPIES;
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    let store = db.messages.account("sales").unwrap();
    let fill = MAX_SENT_COPIES - 16;
    for i in 0..fill {
        store
            .keep_sent_copy("chat@g.us", &format!("m{i}"), b"p".to_vec(), 1000)
            .unwrap();
    }
    // Stored last but sent longest ago: age, not arrival, decides.
    for i in 0..16 {
        store
            .keep_sent_copy("chat@g.us", &format!("old{i}"), b"p".to_vec(), 500)
            .unwrap();
    }
    assert_eq!(store.sent_copy_count().await, MAX_SENT_COPIES);

    s.store_sent_message("chat@g.us", "trigger", b"p")
        .await
        .unwrap();
    assert_eq!(store.sent_copy_count().await, MAX_SENT_COPIES * 3 / 4 + 1);
    for i in 0..16 {
        assert!(
            s.take_sent_message("chat@g.us", &format!("old{i}"))
                .await
                .unwrap()
                .is_none(),
            "old{i} is the oldest and must have been evicted"
        );
    }
    assert!(
        s.take_sent_message("chat@g.us", "m0")
            .await
            .unwrap()
            .is_none(),
        "among copies of one second, the first stored goes first"
    );
    for id in [format!("m{}", fill - 1), "trigger".into()] {
        assert!(
            s.take_sent_message("chat@g.us", &id)
                .await
                .unwrap()
                .is_some(),
            "{id} is among the newest"
        );
    }
}

#[tokio::test]
async fn a_backend_without_its_message_store_refuses_the_library_records_and_keeps_nothing() {
    let dir = temp_dir();
    let state = open_state(&dir.path().join("state"));
    let s = state.account("sales").unwrap();
    let errors = [
        s.store_sent_message("c", "m", b"p").await.unwrap_err(),
        s.take_sent_message("c", "m").await.unwrap_err(),
        s.delete_expired_sent_messages(1).await.unwrap_err(),
        s.put_msg_secret("c", "s", "m", &[1; 32]).await.unwrap_err(),
        s.get_msg_secret("c", "s", "m").await.unwrap_err(),
        s.delete_expired_msg_secrets(1).await.unwrap_err(),
        s.store_pending_inbound("c", "s", "i", b"m")
            .await
            .unwrap_err(),
        s.get_pending_inbound("c", "s", "i").await.unwrap_err(),
        s.delete_pending_inbound("c", "s", "i").await.unwrap_err(),
        s.delete_expired_pending_inbound(1).await.unwrap_err(),
    ];
    for err in errors {
        let msg = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(msg.contains("\"sales\""), "{msg}");
        assert!(msg.contains("not attached"), "{msg}");
    }
    s.put_session("a@s.whatsapp.net", b"x").await.unwrap();
    let err = s.clear().await.unwrap_err();
    assert!(err.to_string().contains("clear its session"), "{err}");
    assert!(
        s.get_session("a@s.whatsapp.net").await.unwrap().is_some(),
        "a clear that cannot reach every record wipes none"
    );

    let messages = MessageDb::open(&dir.path().join("messages.db"), None).unwrap();
    s.keep_library_records_in(messages.account("sales").unwrap());
    s.store_sent_message("c", "m", b"p").await.unwrap();
    assert_eq!(
        s.take_sent_message("c", "m").await.unwrap(),
        Some(b"p".to_vec())
    );
    assert_eq!(
        messages.account("sales").unwrap().sent_copy_count().await,
        0
    );
}

#[tokio::test]
async fn pending_inbound_buffer() {
    let dir = temp_dir();
    // Written, then both databases closed and opened again: the buffer is
    // in messages.db.
    let (db, s) = write_then_reopen(&dir, "sales", |s| async move {
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
    let store = db.messages.account("sales").unwrap();
    assert_eq!(store.buffered_inbound_count().await, 3);

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
    // A delete returns once queued: the count waits for it.
    s.delete_pending_inbound("c", "s", "1").await.unwrap();
    assert_eq!(store.buffered_inbound_count().await, 2);
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
    assert_eq!(store.buffered_inbound_count().await, 1);
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
    assert_eq!(
        db.tree_names(),
        super::snapshot::shared_trees(),
        "nothing of it in sled"
    );
}

/// What the outbox would answer: one message it knows.
struct OneResend;

#[async_trait::async_trait]
impl crate::store::ResendSource for OneResend {
    async fn payload(&self, _chat: &str, id: &str) -> Option<Vec<u8>> {
        (id == "lost").then(|| b"from the outbox".to_vec())
    }
}

#[tokio::test]
async fn a_sent_message_the_library_lost_is_served_from_the_resend_source() {
    let dir = temp_dir();
    let (_db, s) = write_then_reopen(&dir, "sales", |s| async move {
        s.store_sent_message("c@s.whatsapp.net", "kept", b"library copy")
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        s.take_sent_message("c@s.whatsapp.net", "lost")
            .await
            .unwrap(),
        None
    );
    s.serve_resends_from(Arc::new(OneResend));
    assert_eq!(
        s.take_sent_message("c@s.whatsapp.net", "kept")
            .await
            .unwrap(),
        Some(b"library copy".to_vec()),
        "the library's own copy comes first"
    );
    assert_eq!(
        s.take_sent_message("c@lid", "lost").await.unwrap(),
        Some(b"from the outbox".to_vec())
    );
    assert_eq!(
        s.take_sent_message("c@s.whatsapp.net", "other")
            .await
            .unwrap(),
        None
    );
}
