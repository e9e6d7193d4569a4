use super::*;

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
    let encode = |s: &HashState| {
        crate::store::codec::encode(&crate::store::records::AppStateVersion::from(s)).unwrap()
    };
    assert_eq!(encode(&a), encode(&b));
}
