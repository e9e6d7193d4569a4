//! Sessions that survive anything: snapshots, automatic restore of a damaged
//! live database, encryption at rest and moving an account between state
//! directories. Real walinkd and walink, real sled files, mock-wa.

mod harness;

use std::path::Path;
use std::time::Duration;

use harness::{Env, eventually, hashes, path_str, stays, walinkd_fails};
use serde_json::Value;

const CONNECT: Duration = Duration::from_secs(40);
/// Short schedule so tests see several rounds quickly.
const STORAGE: &str = "\n[storage]\nsnapshot_interval_secs = 1\nsnapshot_generations = 3\nvalidate_interval_secs = 1\n";

/// `walink export|import sales FILE --passphrase-file PASSPHRASE`.
async fn transfer(env: &Env, verb: &str, file: &Path, passphrase: &Path) -> std::process::Output {
    env.walink(&[
        verb,
        "sales",
        path_str(file),
        "--passphrase-file",
        path_str(passphrase),
    ])
    .await
}

async fn backups(env: &Env) -> Vec<Value> {
    let out = env.walink(&["backups", "sales", "--json"]).await;
    assert!(
        out.status.success(),
        "walink backups: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("backups --json");
    v["snapshots"].as_array().cloned().unwrap_or_default()
}

/// The generation ids once no backup has been added for a while: the
/// backups triggered by a (re)connection are taken after a settle delay, so
/// the newest generation is only known once they are in.
async fn settled_ids(env: &Env) -> Vec<u64> {
    eventually(Duration::from_secs(20), "backups settle", || async {
        let before = ids(&backups(env).await);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let after = ids(&backups(env).await);
        (before == after).then_some(after)
    })
    .await
}

fn ids(list: &[Value]) -> Vec<u64> {
    list.iter().map(|s| s["id"].as_u64().unwrap()).collect()
}

async fn paired_with(storage: &str) -> (Env, String) {
    let mut env = Env::with_connection(&["sales"], storage).await;
    env.start_daemon().await;
    let jid = env.pair("sales").await;
    env.wait_state("sales", "connected", CONNECT).await;
    (env, jid)
}

/// Cuts a sled database's main file short, as a crash in the middle of a
/// write or a full disk would.
fn truncate_files(dir: &Path) {
    let db = dir.join("db");
    let bytes = std::fs::read(&db).expect("read the live db file");
    std::fs::write(&db, &bytes[..bytes.len() * 2 / 3]).expect("write the cut db file");
}

/// Damages a sled database directory the way a bad disk would: the main
/// file cut short, then bytes flipped in what is left and in its snapshots.
fn damage_files(dir: &Path) {
    truncate_files(dir);
    let db = dir.join("db");
    let mut bytes = std::fs::read(&db).expect("read the live db file");
    for i in (0..bytes.len()).step_by(97) {
        bytes[i] ^= 0x5A;
    }
    std::fs::write(&db, bytes).expect("write the damaged db file");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap."))
        {
            let mut snap = std::fs::read(&path).unwrap();
            for i in (0..snap.len()).step_by(13) {
                snap[i] ^= 0xFF;
            }
            std::fs::write(&path, snap).unwrap();
        }
    }
}

/// Flips a byte in the middle of backup generation `id` (daemon stopped).
async fn damage_generation(env: &Env, id: u64) {
    let path = env.state_dir().join("backup");
    let db = eventually(
        Duration::from_secs(10),
        "the backup db lock is free",
        || {
            let path = path.clone();
            async move { sled::open(&path).ok() }
        },
    )
    .await;
    // A generation is stored in pieces under (id, piece number).
    let tree = db.open_tree("backup:sales:chunks").unwrap();
    let pieces: Vec<_> = tree
        .scan_prefix(id.to_be_bytes())
        .map(|piece| piece.unwrap())
        .collect();
    assert!(!pieces.is_empty(), "generation {id} exists");
    let (key, value) = &pieces[pieces.len() / 2];
    let mut value = value.to_vec();
    let middle = value.len() / 2;
    value[middle] ^= 0x01;
    tree.insert(key, value).unwrap();
    db.flush().unwrap();
}

fn restored_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("restored_from_backup"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_keep_a_damaged_session_alive_without_a_new_pairing() {
    let (mut env, jid) = paired_with(STORAGE).await;

    // Taken right after pairing and on the schedule; identical states are
    // not stored twice.
    let first = eventually(
        Duration::from_secs(20),
        "a backup after pairing",
        || async {
            let list = backups(&env).await;
            (!list.is_empty()).then_some(list)
        },
    )
    .await;
    assert_eq!(first[0]["jid"], jid.as_str());
    assert_eq!(first[0]["checksum"].as_str().unwrap().len(), 64);
    let settled = settled_ids(&env).await;
    stays(
        Duration::from_secs(3),
        "no new generation while nothing changes",
        || async { ids(&backups(&env).await) == settled },
    )
    .await;
    let out = env.walink(&["backup", "sales", "--json"]).await;
    assert!(out.status.success());
    let same: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        same["created"], false,
        "unchanged state is not stored again"
    );

    // Every change makes a generation; only the newest 3 are kept. A first
    // message to someone new changes the session (a Signal session is made
    // and stored before it goes out); a later one to the same person need
    // not, as the library stores the ratchet's advance in leases, and the
    // library's copy of each send is not part of a generation.
    for i in 0..4 {
        let text = format!("change {i}");
        let to = format!("+1555765432{i}");
        let out = env.walink(&["send", "sales", &to, &text]).await;
        assert!(
            out.status.success(),
            "send: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = env.walink(&["backup", "sales", "--json"]).await;
        assert!(out.status.success());
    }
    let kept = ids(&backups(&env).await);
    assert_eq!(kept.len(), 3, "pruned to snapshot_generations: {kept:?}");
    assert!(
        kept[0] >= settled[0] + 4,
        "newest first, ids increase: {kept:?}"
    );
    assert!(kept.windows(2).all(|w| w[0] > w[1]));
    let out = env.walink(&["status", "sales", "--json"]).await;
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let session = &status["accounts"][0]["session"];
    assert_eq!(session["valid"], true);
    assert!(session["last_backup_at"].as_u64().is_some());
    assert!(session["validated_at"].as_u64().is_some());

    // A crash cut the live database short: sled recovers what it can, and
    // whatever it is, the account comes back as itself.
    env.stop_daemon(libc::SIGKILL).await;
    let live = env.state_dir().join("state");
    truncate_files(&live);
    env.start_daemon().await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str(), "same identity after a cut file");
    assert_eq!(env.mock.stats().pairings, 1, "no new pairing");
    let restored_before = restored_lines(&env.daemon_log()).len();

    // The live database is damaged while walinkd is stopped.
    let kept = settled_ids(&env).await;
    env.stop_daemon(libc::SIGTERM).await;
    damage_files(&live);
    env.start_daemon().await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str(), "same identity after the restore");
    assert_eq!(env.mock.stats().pairings, 1, "no new pairing");
    let log = env.daemon_log();
    let restored = restored_lines(&log);
    assert_eq!(
        restored.len(),
        restored_before + 1,
        "one restore logged: {restored:?}"
    );
    assert!(
        restored[restored_before].contains(&format!("generation={}", kept[0])),
        "the newest generation is used: {}",
        restored[restored_before]
    );
    let aside: Vec<String> = std::fs::read_dir(env.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.damaged-"))
        .collect();
    assert_eq!(
        aside.len(),
        restored_before + 1,
        "the damaged state is kept aside: {aside:?}"
    );

    // Damaged again, and the newest generation is damaged too: the one
    // before it is used.
    let newest = settled_ids(&env).await;
    env.stop_daemon(libc::SIGTERM).await;
    damage_generation(&env, newest[0]).await;
    damage_files(&live);
    env.start_daemon().await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str());
    assert_eq!(env.mock.stats().pairings, 1, "still no new pairing");
    let log = env.daemon_log();
    let restored = restored_lines(&log);
    assert_eq!(restored.len(), restored_before + 2, "{restored:?}");
    assert!(
        restored[restored_before + 1].contains(&format!("generation={}", newest[1])),
        "the previous generation is used: {}",
        restored[restored_before + 1]
    );
    assert!(
        log.contains("checksum mismatch"),
        "the skipped one is explained"
    );

    // Damaged backups never keep a healthy account offline, and backing up
    // goes on.
    env.stop_daemon(libc::SIGTERM).await;
    damage_files(&env.state_dir().join("backup"));
    env.start_daemon().await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str());
    let out = env.walink(&["backup", "sales", "--json"]).await;
    assert!(
        out.status.success(),
        "backups work again: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.mock.stats().pairings, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_and_clear_session_keep_or_purge_the_last_backup() {
    let (env, jid) = paired_with(STORAGE).await;
    eventually(
        Duration::from_secs(20),
        "a backup after pairing",
        || async { (!backups(&env).await.is_empty()).then_some(()) },
    )
    .await;

    // A second walinkd on the same state directory is refused by the lock,
    // which is not damage: nothing is moved aside or restored.
    let err = walinkd_fails(&env).await;
    assert!(err.contains("another walinkd"), "{err}");
    let names: Vec<String> = std::fs::read_dir(env.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("damaged")), "{names:?}");
    assert!(restored_lines(&env.daemon_log()).is_empty());

    use tokio::io::AsyncBufReadExt;
    let mut events = tokio::process::Command::new(env!("CARGO_BIN_EXE_walink"))
        .arg("--socket")
        .arg(env.socket())
        .args(["events", "sales", "--json"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(events.stdout.take().unwrap()).lines();
    let mut wait_line = async |needle: &str| {
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(needle) {
                    return line;
                }
            }
            String::new()
        })
        .await
        .unwrap_or_else(|_| panic!("an event with {needle}"))
    };
    // The account is cut off (so the clear cannot log it out on the
    // server); the subscription is live once it sees that.
    env.mock.refuse(2);
    env.mock.fault(&jid, mock_wa::Fault::Close);
    wait_line("\"reconnecting\"").await;

    let out = env.walink(&["clear-session", "sales"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_state("sales", "stopped", CONNECT).await;
    let kept = backups(&env).await;
    assert_eq!(kept.len(), 1, "one last generation is kept");

    // An operator's mistake, undone: the session comes back with no QR.
    let out = env.walink(&["restore", "sales", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["snapshot"]["id"], kept[0]["id"]);
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str());
    assert_eq!(env.mock.stats().pairings, 1);
    let restored = wait_line("\"restored_from_backup\"").await;
    assert!(restored.contains(&format!("\"generation\":{}", kept[0]["id"])));

    // Restoring under a live connection: dropped, restored, back.
    let newest = ids(&backups(&env).await)[0];
    let before = env.mock.stats();
    let out = env
        .walink(&["restore", "sales", "--snapshot", &newest.to_string()])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_line(&format!("\"generation\":{newest}")).await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str());
    let after = env.mock.stats();
    assert_eq!(after.pairings, 1);
    assert!(
        after.handshakes_ik > before.handshakes_ik,
        "logged in again with the restored key"
    );
    let out = env.walink(&["restore", "sales", "--snapshot", "999"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backup generation 999"));

    let out = env.walink(&["clear-session", "sales", "--purge"]).await;
    assert!(out.status.success());
    assert!(
        backups(&env).await.is_empty(),
        "--purge deletes every backup"
    );
    let out = env.walink(&["restore", "sales"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no usable backup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_state_needs_its_key_and_moves_to_another_state_dir() {
    let keys = tempfile::tempdir().unwrap();
    let key_a = keys.path().join("a.key");
    let key_b = keys.path().join("b.key");
    std::fs::write(&key_a, [0xA1u8; 32]).unwrap();
    std::fs::write(&key_b, format!("{}\n", "b2".repeat(32))).unwrap();
    let with_key = |key: &Path| format!("{STORAGE}key_file = {:?}\n", path_str(key));
    // Linked without encryption, then a key is configured: the account's
    // records are sealed at the next start, and it connects as before.
    let (mut env, jid) = paired_with(STORAGE).await;
    let list = eventually(Duration::from_secs(20), "a backup", || async {
        let list = backups(&env).await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(list[0]["sealed"], false);
    let out = env
        .walink(&["send", "sales", CONTACT, "written before the key"])
        .await;
    assert!(out.status.success());
    env.stop_daemon(libc::SIGTERM).await;
    env.write_config(&["sales"], &with_key(&key_a));
    env.start_daemon().await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str());
    assert_eq!(env.mock.stats().pairings, 1);
    eventually(Duration::from_secs(20), "a sealed backup", || async {
        let list = backups(&env).await;
        (list[0]["sealed"] == true).then_some(())
    })
    .await;
    let out = env
        .walink(&["send", "sales", CONTACT, "written with the key"])
        .await;
    assert!(out.status.success());
    let out = env.walink(&["outbox", "sales", "--all", "--json"]).await;
    let outbox = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        outbox.contains("written before the key") && outbox.contains("written with the key"),
        "the outbox reads through the encryption: {outbox}"
    );

    // Export with a passphrase from a file: the daemon never sees it.
    let pass = keys.path().join("pass");
    std::fs::write(&pass, "moving day\n").unwrap();
    let file = keys.path().join("sales.walink");
    let out = transfer(&env, "export", &file, &pass).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read(&file).unwrap();
    assert!(exported.starts_with(b"WALINKX1"));
    assert!(!env.daemon_log().contains("moving day"));
    env.stop_daemon(libc::SIGTERM).await;

    // On disk, the credentials are sealed.
    {
        let live = env.state_dir().join("state");
        let db = eventually(Duration::from_secs(10), "live db lock", || {
            let live = live.clone();
            async move { sled::open(&live).ok() }
        })
        .await;
        // Every account's records of a kind share one tree, under keys
        // that start with the account's name, length-prefixed.
        let key = [&5u32.to_be_bytes()[..], b"sales", b"device"].concat();
        let device = db
            .open_tree("state:meta")
            .unwrap()
            .get(key)
            .unwrap()
            .expect("device record");
        assert!(device[0] >= 0x80, "the device record is sealed");
    }
    // messages.db is encrypted whole: no text, no number in its files.
    for (path, bytes) in files(&env.state_dir()) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !contains(&bytes, b"written with the key"),
            "{} holds a message text in the clear",
            path.display()
        );
        if name.starts_with("messages.db") {
            for needle in [&b"written before the key"[..], CONTACT.as_bytes()] {
                assert!(
                    !contains(&bytes, needle),
                    "{} holds {:?} in the clear",
                    path.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }

    // A wrong key, or none: refused, and not one byte changes.
    let before = hashes(&env.state_dir());
    env.write_config(&["sales"], &with_key(&key_b));
    let err = walinkd_fails(&env).await;
    assert!(err.contains("encrypted") && err.contains("key"), "{err}");
    env.write_config(&["sales"], STORAGE);
    let err = walinkd_fails(&env).await;
    assert!(err.contains("no key is configured"), "{err}");
    let missing = keys.path().join("missing.key");
    env.write_config(&["sales"], &with_key(&missing));
    let err = walinkd_fails(&env).await;
    assert!(err.contains("missing.key"), "names the key file: {err}");
    assert_eq!(hashes(&env.state_dir()), before, "files unchanged");

    // Another state directory (another host's), with its own key: import.
    std::fs::rename(env.state_dir(), env.dir.path().join("old-host")).unwrap();
    env.write_config(&["sales"], &with_key(&key_b));
    env.start_daemon().await;
    let out = transfer(&env, "import", &file, &keys.path().join("nope")).await;
    assert_eq!(
        out.status.code(),
        Some(64),
        "a missing passphrase file is a usage error"
    );
    std::fs::write(keys.path().join("wrong"), "not it").unwrap();
    let out = transfer(&env, "import", &file, &keys.path().join("wrong")).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("passphrase or key is wrong"));
    let out = transfer(&env, "import", &file, &pass).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str(), "the same identity on the new host");
    assert_eq!(env.mock.stats().pairings, 1, "no QR on the new host");
    let out = env.walink(&["backups", "sales", "--json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["reason"] == "imported"),
        "the import is kept as a generation: {v}"
    );
}

const CONTACT: &str = "15557654321";

/// Every file below `dir` with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Takes the account offline (the mock refuses it), so sends stay pending.
async fn go_offline(env: &Env) {
    let jid = env.jid("sales").await;
    env.mock.refuse(3600);
    env.mock.fault(&jid, mock_wa::Fault::Close);
    env.wait_state("sales", "reconnecting", CONNECT).await;
}

async fn send_no_wait(env: &Env, text: &str) -> String {
    let out = env
        .walink(&["send", "sales", CONTACT, text, "--no-wait"])
        .await;
    assert!(
        out.status.success(),
        "send {text}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// How many times the contact got each text.
async fn delivered(env: &Env) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for entry in env.mock.inbox(CONTACT).await {
        *counts.entry(entry.text).or_default() += 1;
    }
    counts
}

async fn wait_delivered(env: &Env, texts: &[&str]) {
    eventually(
        CONNECT,
        "every pending send reaches the contact",
        || async {
            let got = delivered(env).await;
            texts.iter().all(|t| got.contains_key(*t)).then_some(())
        },
    )
    .await;
}

/// Cuts `messages.db` short and scrambles what is left past its header,
/// its WAL gone with it, as a bad disk would leave it.
fn damage_messages_db(state_dir: &Path) {
    let db = state_dir.join("messages.db");
    for side in ["messages.db-wal", "messages.db-shm"] {
        let _ = std::fs::remove_file(state_dir.join(side));
    }
    let mut bytes = std::fs::read(&db).expect("read messages.db");
    for b in bytes.iter_mut().skip(100) {
        *b ^= 0xA5;
    }
    std::fs::write(&db, bytes).expect("write the damaged messages.db");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_pending_at_a_restore_go_out_once() {
    let (mut env, jid) = paired_with(STORAGE).await;

    // Acked after a generation that has it as pending: never sent twice.
    go_offline(&env).await;
    send_no_wait(&env, "acked later").await;
    let out = env.walink(&["backup", "sales", "--json"]).await;
    assert!(out.status.success());
    env.mock.refuse(0);
    wait_delivered(&env, &["acked later"]).await;

    // Pending while sled becomes unopenable (the panic path at start): the
    // session comes back from a backup, and the messages were never in it.
    go_offline(&env).await;
    let texts = ["pending 1", "pending 2", "pending 3"];
    for text in texts {
        send_no_wait(&env, text).await;
    }
    env.stop_daemon(libc::SIGKILL).await;
    damage_files(&env.state_dir().join("state"));
    env.mock.refuse(0);
    env.start_daemon().await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str(), "the same session, restored");
    assert_eq!(restored_lines(&env.daemon_log()).len(), 1);
    wait_delivered(&env, &texts).await;

    // Pending, in a generation, and then messages.db is lost as well: the
    // generation's pending sends go out, the ones acked long ago do not.
    go_offline(&env).await;
    let later = ["from the backup 1", "from the backup 2"];
    for text in later {
        send_no_wait(&env, text).await;
    }
    let out = env.walink(&["backup", "sales", "--json"]).await;
    assert!(out.status.success());
    env.stop_daemon(libc::SIGKILL).await;
    damage_files(&env.state_dir().join("state"));
    damage_messages_db(&env.state_dir());
    env.mock.refuse(0);
    env.start_daemon().await;
    env.wait_state("sales", "connected", CONNECT).await;
    let log = env.daemon_log();
    assert!(log.contains("messages_damaged"), "the damage is logged");
    assert!(log.contains("requeued_from_backup"), "{log}");
    wait_delivered(&env, &later).await;

    // Once each, whatever came back from where, and still no new pairing.
    stays(
        Duration::from_secs(3),
        "nothing is delivered twice",
        || async { delivered(&env).await.values().all(|n| *n == 1) },
    )
    .await;
    let got = delivered(&env).await;
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(env.mock.stats().pairings, 1);
    assert!(
        std::fs::read_dir(env.state_dir()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("messages.db.damaged-")),
        "the damaged messages.db is kept aside"
    );
}

/// The library saves what it changes in the device record through a
/// background saver. Without it, a walinkd killed after its login's prekey
/// upload forgot that the server holds the prekeys, and the next one
/// uploaded another 812, all kept in the state and in every backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_after_the_prekey_upload_does_not_upload_them_again() {
    let (mut env, jid) = paired_with("").await;
    let messaging = env.mock.messaging().expect("messaging side").clone();
    let uploaded = eventually(
        Duration::from_secs(20),
        "the prekeys uploaded after pairing",
        || {
            let (messaging, jid) = (messaging.clone(), jid.clone());
            async move {
                let held = messaging.prekeys_held(&jid).await;
                (held > 0).then_some(held)
            }
        },
    )
    .await;
    // The upload marks the device record changed; it is on disk once
    // walink's store says so after the upload.
    eventually(Duration::from_secs(20), "the device record saved", || {
        let log = env.daemon_log();
        async move {
            let upload = log.rfind("Server missing prekeys (persisted flag)")?;
            log[upload..].contains("device record saved").then_some(())
        }
    })
    .await;
    env.stop_daemon(libc::SIGKILL).await;
    // The library decides on its login upload on a task of its own, after
    // the account is connected; its debug line says what it decided.
    env.daemon_env.push((
        "RUST_LOG".into(),
        "info,walink=debug,whatsapp_rust::prekeys=debug".into(),
    ));
    let before = env.daemon_log().len();
    env.start_daemon().await;
    let skipped = eventually(CONNECT, "the login's prekey decision", || {
        let log = env.daemon_log().split_off(before);
        async move {
            if log.contains("Server has prekeys (persisted flag)") {
                Some(true)
            } else if log.contains("Server missing prekeys (persisted flag)") {
                Some(false)
            } else {
                None
            }
        }
    })
    .await;
    assert!(skipped, "the restart uploaded prekeys again");
    assert_eq!(messaging.prekeys_held(&jid).await, uploaded);
}
