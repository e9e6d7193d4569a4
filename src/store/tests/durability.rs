use super::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the files taken while the database is still open is what a
/// kill -9 leaves behind: no clean shutdown, no final flush.
#[tokio::test]
async fn saved_credentials_survive_a_crash() {
    let dir = temp_dir();
    let live = dir.path().join("live");
    let db = open(&live);
    let device = registered_device();
    db.account("sales").unwrap().save(&device).await.unwrap();

    let crashed = dir.path().join("crashed");
    copy_dir(&live, &crashed);
    let recovered = open(&crashed);
    let acct = recovered.account("sales").unwrap();
    assert!(acct.has_credentials());
    assert_eq!(
        device_json(&acct.load().await.unwrap().unwrap()),
        device_json(&device)
    );
}

#[test]
fn second_open_of_the_same_directory_is_refused_with_advice() {
    let dir = temp_dir();
    let _first = open(dir.path());
    let err = StateDb::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(msg.contains("another walinkd"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tc_token_writers_converge() {
    let dir = temp_dir();
    let db = open(dir.path());
    let s = db.account("sales").unwrap();
    let mut tasks = Vec::new();
    for i in 1..=50i64 {
        let toucher = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            toucher.touch_tc_token_sender_timestamp("u", i * 10).await
        }));
        let receiver = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            receiver
                .store_received_tc_token("u", &i.to_be_bytes(), i * 10)
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let entry = s.get_tc_token("u").await.unwrap().unwrap();
    assert_eq!(
        entry.sender_timestamp,
        Some(500),
        "sender bucket is the max"
    );
    assert_eq!(entry.token_timestamp, 500, "newest token wins");
    assert_eq!(entry.token, 50i64.to_be_bytes().to_vec());
}

/// sled panicking inside `open` (as it did reopening after a kill -9 under
/// `make chaos`) must reach the caller as an error, which the daemon's
/// damaged-database path handles, not unwind through walinkd's start.
#[test]
fn a_panic_while_opening_sled_is_an_open_error() {
    use crate::store::db::open_catching_panics;

    let err = open_catching_panics::<()>(|| panic!("tried to serialize Uninitialized"))
        .expect_err("a panic is an error");
    assert!(
        matches!(&err, sled::Error::ReportableBug(m) if m.contains("tried to serialize Uninitialized")),
        "{err:?}"
    );
    let owned = open_catching_panics::<()>(|| panic!("{} at {}", "corrupt", 42)).unwrap_err();
    assert!(format!("{owned:?}").contains("corrupt at 42"), "{owned:?}");
    assert_eq!(open_catching_panics(|| Ok(7)).unwrap(), 7);

    let dir = tempfile::tempdir().unwrap();
    let db = crate::store::StateDb::open(&dir.path().join("state"));
    assert!(db.is_ok(), "a good database still opens");
}
