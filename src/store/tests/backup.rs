use super::snapshot::populate;
use super::*;
use crate::store::backup::{BackupDb, BackupError, NewestCheck};
use crate::store::{AccountSnapshot, Sealer};

fn verified(snapshot: &AccountSnapshot) -> Result<(), String> {
    let report = snapshot.verify();
    report
        .is_valid()
        .then_some(())
        .ok_or_else(|| format!("{:?}", report.problems))
}

/// A state database with account `sales` populated, in a temporary
/// directory that also has room for the backups.
async fn populated() -> (TempDir, TestDb, Arc<SledBackend>) {
    let dir = temp_dir();
    let db = open(&dir.path().join("state"));
    let s = db.account("sales").unwrap();
    populate(&s).await;
    (dir, db, s)
}

fn open_backups(path: &Path, sealer: Option<Sealer>) -> BackupDb {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match BackupDb::open(path, sealer.clone().map(Arc::new)) {
            Ok(db) => return db,
            Err(BackupError::Open { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("open the backup database: {err}"),
        }
    }
}

#[tokio::test]
async fn generations_are_deduplicated_pruned_and_restorable() {
    let (dir, _db, s) = populated().await;
    let backups = open_backups(&dir.path().join("backup"), None);

    let first = backups
        .store(&s.snapshot().unwrap(), "paired", 3, 1000)
        .unwrap();
    assert!(first.created);
    assert_eq!(first.info.id, 1);
    assert_eq!(
        first.info.jid.as_deref(),
        Some("15551234567:12@s.whatsapp.net")
    );
    assert!(first.info.size_bytes > 0);
    let same = backups
        .store(&s.snapshot().unwrap(), "scheduled", 3, 2000)
        .unwrap();
    assert!(!same.created, "identical state is not stored twice");
    assert_eq!(same.info.id, 1);

    for i in 0..4u8 {
        s.put_session("a@s.whatsapp.net", &[i]).await.unwrap();
        let stored = backups
            .store(&s.snapshot().unwrap(), "scheduled", 3, 3000)
            .unwrap();
        assert!(stored.created);
    }
    let ids: Vec<u64> = backups
        .list("sales")
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, vec![5, 4, 3], "newest first, pruned to 3");

    let (info, snapshot) = backups.load("sales", 4, &verified).unwrap();
    assert_eq!(info.id, 4);
    s.restore(&snapshot).unwrap();
    assert_eq!(
        s.get_session("a@s.whatsapp.net").await.unwrap().unwrap(),
        Bytes::from_static(&[2])
    );
    assert!(matches!(
        backups.load("sales", 1, &verified),
        Err(BackupError::Missing { id: 1, .. })
    ));
}

/// Every connect bumps the device record's login counter, stamps when the
/// WhatsApp Web version and the account's device list were looked up and,
/// with a key, writes those records under fresh nonces: none of that is a
/// state worth a generation of its own, but any other change is.
#[tokio::test]
async fn a_login_alone_stores_no_generation_sealed_or_not() {
    for key in [None, Some(Sealer::from_key(&[5; 32]))] {
        let dir = temp_dir();
        let db = StateDb::open_sealed(&dir.path().join("state"), key.clone().map(Arc::new))
            .expect("open the state database");
        let s = db.account("sales").unwrap();
        populate(&s).await;
        let backups = open_backups(&dir.path().join("backup"), key.clone());
        let first = backups
            .store(&s.snapshot().unwrap(), "paired", 12, 1)
            .unwrap();
        assert!(first.created);

        let mut device = s.load().await.unwrap().expect("the saved device");
        device.login_counter += 1;
        device.app_version_last_fetched_ms += 60_000;
        s.save(&device).await.unwrap();
        let mut own_devices = DeviceListRecord {
            user: "5511".into(),
            devices: vec![DeviceInfo::new(0, None)],
            timestamp: 2,
            phash: None,
            raw_id: None,
        };
        s.update_device_list(own_devices.clone()).await.unwrap();
        let login = backups
            .store(&s.snapshot().unwrap(), "connected", 12, 2)
            .unwrap();
        assert!(!login.created, "sealed: {}", key.is_some());
        assert_eq!(login.info.id, first.info.id);

        device.push_name = "Front desk".into();
        s.save(&device).await.unwrap();
        let renamed = backups
            .store(&s.snapshot().unwrap(), "credentials", 12, 3)
            .unwrap();
        assert!(renamed.created, "sealed: {}", key.is_some());

        own_devices.devices.push(DeviceInfo::new(2, None));
        own_devices.timestamp = 3;
        s.update_device_list(own_devices).await.unwrap();
        let linked = backups
            .store(&s.snapshot().unwrap(), "scheduled", 12, 4)
            .unwrap();
        assert!(linked.created, "sealed: {}", key.is_some());
    }
}

#[tokio::test]
async fn a_damaged_newest_generation_falls_back_to_the_previous_one() {
    let (dir, _db, s) = populated().await;
    let backups = open_backups(&dir.path().join("backup"), None);
    backups
        .store(&s.snapshot().unwrap(), "paired", 12, 1)
        .unwrap();
    s.put_session("a@s.whatsapp.net", b"newer").await.unwrap();
    backups
        .store(&s.snapshot().unwrap(), "scheduled", 12, 2)
        .unwrap();

    with_chunks(&backups, "sales", |chunks| {
        let pieces: Vec<_> = chunks.scan_prefix(2u64.to_be_bytes()).collect();
        let (key, piece) = pieces[pieces.len() / 2].clone().unwrap();
        let mut bytes = piece.to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        chunks.insert(key, bytes).unwrap();
    });

    let err = backups.load("sales", 2, &verified).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    let (info, _, skipped) = backups.newest_valid("sales", &verified).unwrap();
    assert_eq!(info.id, 1);
    assert_eq!(skipped.len(), 1);

    // The unchanged state is stored again rather than trusted to the
    // damaged copy.
    let again = backups
        .store(&s.snapshot().unwrap(), "scheduled", 12, 3)
        .unwrap();
    assert!(again.created);
    assert_eq!(again.info.id, 3);
    assert_eq!(backups.newest_valid("sales", &verified).unwrap().0.id, 3);
}

#[tokio::test]
async fn sealed_generations_need_their_key() {
    let (dir, _db, s) = populated().await;
    let key = Sealer::from_key(&[9; 32]);
    {
        let backups = open_backups(&dir.path().join("backup"), Some(key.clone()));
        let stored = backups
            .store(&s.snapshot().unwrap(), "paired", 12, 1)
            .unwrap();
        assert_eq!(stored.info.sealed_with, Some(key.key_id()));
        let raw = with_chunks(&backups, "sales", |chunks| {
            chunks
                .scan_prefix(1u64.to_be_bytes())
                .values()
                .next()
                .unwrap()
                .unwrap()
        });
        assert!(crate::store::seal::is_sealed(&raw));
        assert!(backups.load("sales", 1, &verified).is_ok());
    }
    let without = open_backups(&dir.path().join("backup"), None);
    let err = without.load("sales", 1, &verified).unwrap_err().to_string();
    assert!(err.contains("no key is configured"), "{err}");
    drop(without);
    let wrong = open_backups(&dir.path().join("backup"), Some(Sealer::from_key(&[8; 32])));
    let err = wrong.load("sales", 1, &verified).unwrap_err().to_string();
    assert!(err.contains("configured key is"), "{err}");
}

#[tokio::test]
async fn cleared_marks_and_purge() {
    let (dir, _db, s) = populated().await;
    let backups = open_backups(&dir.path().join("backup"), None);
    backups
        .store(&s.snapshot().unwrap(), "paired", 12, 1)
        .unwrap();
    backups.set_cleared("sales", true).unwrap();
    assert!(backups.is_cleared("sales"));
    s.put_session("a@s.whatsapp.net", b"newer").await.unwrap();
    backups
        .store(&s.snapshot().unwrap(), "paired", 12, 2)
        .unwrap();
    assert!(
        !backups.is_cleared("sales"),
        "a new linked state ends the cleared mark"
    );
    assert_eq!(backups.purge("sales").unwrap(), 2);
    assert!(backups.list("sales").unwrap().is_empty());
}

/// Runs `f` on `account`'s tree `kind` (`chunks`, or `data` for the layout
/// before chunks).
fn with_tree<T: Send>(
    backups: &BackupDb,
    account: &str,
    kind: &str,
    f: impl FnOnce(&sled::Tree) -> T + Send,
) -> T {
    backups.with_raw_tree(&format!("backup:{account}:{kind}"), f)
}

fn with_chunks<T: Send>(
    backups: &BackupDb,
    account: &str,
    f: impl FnOnce(&sled::Tree) -> T + Send,
) -> T {
    with_tree(backups, account, "chunks", f)
}

#[tokio::test]
async fn a_large_generation_is_stored_in_pieces_sled_keeps_inline() {
    let (dir, _db, s) = populated().await;
    // About 2 MB of sessions, the size of a busy account's generation.
    for i in 0..500u32 {
        let record: Vec<u8> = (0..4096u32).map(|b| (b ^ i) as u8).collect();
        s.put_session(&format!("{i}@s.whatsapp.net"), &record)
            .await
            .unwrap();
    }
    let path = dir.path().join("backup");
    let backups = open_backups(&path, None);
    for round in 0..4u8 {
        s.put_session("a@s.whatsapp.net", &[round]).await.unwrap();
        assert!(
            backups
                .store(&s.snapshot().unwrap(), "scheduled", 3, i64::from(round))
                .unwrap()
                .created
        );
    }
    let (info, snapshot, _) = backups.newest_valid("sales", &verified).unwrap();
    assert_eq!(info.id, 4);
    assert!(info.size_bytes > 2_000_000, "{}", info.size_bytes);
    assert_eq!(snapshot, s.snapshot().unwrap());
    let pieces = with_chunks(&backups, "sales", |chunks| {
        chunks
            .iter()
            .keys()
            .map(|k| k.unwrap().to_vec())
            .collect::<Vec<_>>()
    });
    let generations: std::collections::BTreeSet<&[u8]> = pieces.iter().map(|k| &k[..8]).collect();
    assert_eq!(
        generations.into_iter().collect::<Vec<_>>(),
        [2u64, 3, 4]
            .map(u64::to_be_bytes)
            .iter()
            .map(|k| &k[..])
            .collect::<Vec<_>>(),
        "the pruned generation's pieces are gone"
    );
    // sled writes a leaf too large for its log as a file under blobs/; no
    // leaf of pieces is one.
    let blobs = std::fs::read_dir(path.join("blobs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "leaves stored as blob files");
}

#[tokio::test]
async fn a_generation_stored_before_pieces_still_loads_and_is_pruned() {
    let (dir, _db, s) = populated().await;
    let backups = open_backups(&dir.path().join("backup"), None);
    backups
        .store(&s.snapshot().unwrap(), "paired", 2, 1)
        .unwrap();
    // Rewritten as the earlier layout stored it: one value under the id.
    let whole = with_chunks(&backups, "sales", |chunks| {
        let mut whole = Vec::new();
        for piece in chunks.scan_prefix(1u64.to_be_bytes()).values() {
            whole.extend_from_slice(&piece.unwrap());
        }
        chunks.clear().unwrap();
        whole
    });
    with_tree(&backups, "sales", "data", |data| {
        data.insert(1u64.to_be_bytes(), whole).unwrap();
    });
    let (info, snapshot) = backups.load("sales", 1, &verified).unwrap();
    assert_eq!(info.id, 1);
    assert_eq!(snapshot, s.snapshot().unwrap());

    for round in 0..2u8 {
        s.put_session("a@s.whatsapp.net", &[round]).await.unwrap();
        backups
            .store(&s.snapshot().unwrap(), "scheduled", 2, 2)
            .unwrap();
    }
    let ids: Vec<u64> = backups
        .list("sales")
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, [3, 2]);
    assert!(
        with_tree(&backups, "sales", "data", |data| data.is_empty()),
        "the earlier layout's value goes with its generation"
    );
}

/// sled locks its files while open: another handle opens them only if
/// `backups` let go of them.
fn held_open(path: &Path) -> bool {
    sled::Config::new().path(path).open().is_err()
}

/// Waits until `backups` has closed its database, as it does once unused
/// for a few seconds.
fn wait_closed(backups: &BackupDb) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while backups.is_open() {
        assert!(Instant::now() < deadline, "still open after 30 s unused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_backup_database_stays_open_through_a_burst_then_closes() {
    let (dir, _db, s) = populated().await;
    let path = dir.path().join("backup");
    let backups = open_backups(&path, None);
    for round in 0..50u8 {
        s.put_session("a@s.whatsapp.net", &[round]).await.unwrap();
        let stored = backups
            .store(&s.snapshot().unwrap(), "scheduled", 3, i64::from(round))
            .unwrap();
        assert!(stored.created, "round {round}");
        assert_eq!(
            backups.list("sales").unwrap().len(),
            3.min(usize::from(round) + 1)
        );
        assert!(
            backups.is_open(),
            "round {round}: closed between operations"
        );
    }
    assert!(held_open(&path));
    wait_closed(&backups);
    let other = sled::Config::new().path(&path).open();
    assert!(other.is_ok(), "closed for good: {:?}", other.err());
    drop(other);

    // What was stored was on disk before the database closed.
    drop(backups);
    let reopened = open_backups(&path, None);
    assert_eq!(reopened.list("sales").unwrap().len(), 3);
    assert!(reopened.is_open());
    // Dropped, it closes at once, with no wait.
    drop(reopened);
    assert!(!held_open(&path));
}

#[tokio::test]
async fn the_newest_generation_is_checked_once_and_not_reopened_for_nothing() {
    let (dir, _db, s) = populated().await;
    let path = dir.path().join("backup");
    let backups = open_backups(&path, None);
    assert_eq!(
        backups.check_newest("sales", None, &verified).unwrap(),
        NewestCheck::NoGeneration
    );
    backups
        .store(&s.snapshot().unwrap(), "paired", 12, 1)
        .unwrap();
    assert_eq!(
        backups.check_newest("sales", None, &verified).unwrap(),
        NewestCheck::Checked {
            id: 1,
            problem: None
        }
    );
    wait_closed(&backups);
    {
        // Held by another handle, the files cannot be opened: an unchanged
        // newest generation is known without opening them.
        let _other = sled::Config::new().path(&path).open().unwrap();
        assert_eq!(
            backups.check_newest("sales", Some(1), &verified).unwrap(),
            NewestCheck::Unchanged
        );
    }
    s.put_session("a@s.whatsapp.net", b"newer").await.unwrap();
    backups
        .store(&s.snapshot().unwrap(), "scheduled", 12, 2)
        .unwrap();
    with_chunks(&backups, "sales", |chunks| {
        let (key, piece) = chunks
            .scan_prefix(2u64.to_be_bytes())
            .next()
            .unwrap()
            .unwrap();
        let mut bytes = piece.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        chunks.insert(key, bytes).unwrap();
    });
    match backups.check_newest("sales", Some(1), &verified).unwrap() {
        NewestCheck::Checked {
            id: 2,
            problem: Some(problem),
        } => assert!(problem.contains("checksum"), "{problem}"),
        other => panic!("generation 2 checked and found damaged, not {other:?}"),
    }
}
