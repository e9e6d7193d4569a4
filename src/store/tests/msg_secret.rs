use super::*;

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
    assert_eq!(
        s.delete_expired_msg_secrets(i64::MAX).await.unwrap(),
        0,
        "a row that never expires is never pruned"
    );
}

#[tokio::test]
async fn pruning_message_secrets_touches_only_its_own_account() {
    let dir = temp_dir();
    let db = open(dir.path());
    let a = db.account("a").unwrap();
    let b = db.account("b").unwrap();
    for s in [&a, &b] {
        s.put_msg_secrets(vec![secret_entry("M", 1, 100, 0)])
            .await
            .unwrap();
    }
    assert_eq!(a.delete_expired_msg_secrets(100).await.unwrap(), 1);
    assert!(
        a.get_msg_secret("chat", "sender", "M")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        b.get_msg_secret("chat", "sender", "M").await.unwrap(),
        Some(vec![1; 32])
    );
}
