use super::*;

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
