use super::snapshot::populate;
use super::*;
use crate::store::Sealer;
use crate::store::seal::is_sealed;

fn open_with(path: &Path, sealer: Option<Sealer>) -> StateDb {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match StateDb::open_sealed(path, sealer.clone().map(Arc::new)) {
            Ok(db) => return db,
            Err(StoreError::Open { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("open the state database: {err}"),
        }
    }
}

#[tokio::test]
async fn records_are_sealed_on_disk_and_need_their_key() {
    let dir = temp_dir();
    let key = Sealer::from_key(&[3; 32]);
    let snapshot = {
        let db = open_with(dir.path(), Some(key.clone()));
        let s = db.account("sales").unwrap();
        populate(&s).await;
        for kind in Kind::ALL {
            for item in s.rows(kind, &[]) {
                let (_, value) = item.unwrap();
                assert!(is_sealed(&value), "{kind:?} holds a plain value");
            }
        }
        let report = s.verify().unwrap();
        assert!(
            report.is_valid() && report.registered,
            "{:?}",
            report.problems
        );
        s.snapshot().unwrap()
    };

    let db = open_with(dir.path(), Some(key.clone()));
    let s = db.account("sales").unwrap();
    assert_eq!(s.jid().as_deref(), Some("15551234567:12@s.whatsapp.net"));
    assert_eq!(snapshot.jid(), None, "a sealed snapshot needs its key");
    assert_eq!(snapshot.jid_with(Some(&key)), s.jid());
    drop((s, db));

    for (other, says) in [
        (None, "no key is configured"),
        (Some(Sealer::from_key(&[4; 32])), "configured key is"),
    ] {
        let db = open_with(dir.path(), other);
        let s = db.account("sales").unwrap();
        let report = s.verify().unwrap();
        let problem = report.key_problem.clone().expect("a key problem");
        assert!(problem.contains(says), "{problem}");
        assert!(!s.has_credentials());
        let Err(err) = s.load_device() else {
            panic!("a device record sealed with another key must not load");
        };
        let err = err.to_string();
        assert!(err.contains("cannot be unsealed"), "{err}");
    }
}

#[tokio::test]
async fn snapshots_move_between_keys_and_plain_stores_migrate() {
    let dir = temp_dir();
    let key = Sealer::from_key(&[3; 32]);
    let plain_db = open_with(&dir.path().join("plain"), None);
    let plain = plain_db.account("sales").unwrap();
    populate(&plain).await;
    let exported = plain.snapshot().unwrap();

    // A plain store keeps working once a key is configured.
    drop((plain, plain_db));
    let db = open_with(&dir.path().join("plain"), Some(key.clone()));
    let s = db.account("sales").unwrap();
    assert!(s.has_credentials());
    assert!(s.verify().unwrap().is_valid());

    // Moved to a store with another key: resealed, then read with it.
    let other = Sealer::from_key(&[5; 32]);
    let sealed = exported.resealed(None, Some(&other)).unwrap();
    assert!(!sealed.verify().is_valid(), "sealed rows need the key");
    assert!(sealed.verify_with(Some(&other)).is_valid());
    let target_db = open_with(&dir.path().join("other"), Some(other.clone()));
    let target = target_db.account("sales").unwrap();
    target.restore(&sealed).unwrap();
    assert_eq!(target.jid(), s.jid());
    let back = target
        .snapshot()
        .unwrap()
        .resealed(Some(&other), None)
        .unwrap();
    assert_eq!(back, exported, "unsealing gives the exported records back");
    assert!(
        exported.resealed(Some(&key), None).is_ok(),
        "plain rows pass through"
    );
}
