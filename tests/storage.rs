//! Storage as an operator meets it: a state directory written by an older
//! walinkd, files left owned by another user, a disk that fills up. Real
//! walinkd and walink, real sled and SQLite files, mock-wa.

mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::{Env, eventually, hashes, walinkd_fails};
use serde_json::{Value, json};
use walink::ipc::Client;

const CONNECT: Duration = Duration::from_secs(40);
const CONTACT: &str = "15557654321";

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

async fn paired() -> (Env, String) {
    let mut env = Env::new(&["sales"]).await;
    env.start_daemon().await;
    let jid = env.pair("sales").await;
    env.wait_state("sales", "connected", CONNECT).await;
    (env, jid)
}

/// The sled database, opened by the test once walinkd has let go of it.
async fn open_sled(path: PathBuf) -> sled::Db {
    eventually(Duration::from_secs(10), "the sled lock is free", || {
        let path = path.clone();
        async move { sled::open(&path).ok() }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_from_before_messages_db_starts_with_its_session() {
    let (mut env, jid) = paired().await;
    env.stop_daemon(libc::SIGTERM).await;
    // What older walinkds kept in sled: the message trees of each account
    // and the library's buffer of received messages, and no messages.db.
    for side in ["messages.db", "messages.db-wal", "messages.db-shm"] {
        let _ = std::fs::remove_file(env.state_dir().join(side));
    }
    let legacy = [
        "outbox",
        "outbox_ids",
        "outbox_pending",
        "outbox_failed",
        "inbox",
        "inbox_ids",
        "inbox_chats",
        "inbox_chat_stats",
        "pending_inbound",
    ];
    {
        let db = open_sled(env.state_dir().join("state")).await;
        for kind in legacy {
            let tree = db.open_tree(format!("acct:sales:{kind}")).unwrap();
            tree.insert(1u64.to_be_bytes(), &[1u8, 0xde, 0xad][..])
                .unwrap();
        }
        db.flush().unwrap();
    }
    env.start_daemon().await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str(), "the same session");
    assert_eq!(env.mock.stats().pairings, 1, "no new pairing");
    let out = env
        .walink(&["send", "sales", CONTACT, "after the upgrade"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.stop_daemon(libc::SIGTERM).await;
    let db = open_sled(env.state_dir().join("state")).await;
    let left: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| legacy.iter().any(|k| n.ends_with(&format!(":{k}"))))
        .collect();
    assert!(left.is_empty(), "the old message trees are gone: {left:?}");
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            chown_tree(&path, uid, gid);
        } else {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_of_another_owner_refuse_to_start_and_change_nothing() {
    if !is_root() {
        eprintln!("SKIPPED: giving the state files to another user needs root");
        return;
    }
    let (mut env, jid) = paired().await;
    env.stop_daemon(libc::SIGTERM).await;
    let state = env.state_dir();
    chown_tree(&state, 65534, 65534);
    let before = hashes(&state);
    let listed = names(&state);

    let stderr = walinkd_fails(&env).await;
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains(&state.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("nobody") || stderr.contains("65534"),
        "{stderr}"
    );
    assert!(stderr.contains("mode 0"), "names the mode: {stderr}");
    assert!(stderr.contains("chown -R root"), "names the fix: {stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(hashes(&state), before, "every file unchanged");
    assert_eq!(names(&state), listed, "nothing moved aside");

    chown_tree(&state, 0, 0);
    env.start_daemon().await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str());
    assert_eq!(env.mock.stats().pairings, 1, "connected with no QR");
}

/// A small tmpfs mounted over the state directory, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs on {}", at.display());
        SmallDisk(at.to_owned())
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&block[..512]).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

async fn health(env: &Env) -> Value {
    env.call("health", json!({"account": "sales"}))
        .await
        .expect("health answers")
}

/// Sends `n` texts of 60 KB from one client; returns (accepted ids with
/// their text, refusal messages).
async fn burst(socket: PathBuf, prefix: String, n: usize) -> (Vec<(String, String)>, Vec<String>) {
    let mut client = Client::connect(&socket).await.unwrap();
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for i in 0..n {
        let text = format!("{prefix}-{i} {}", "x".repeat(60_000));
        let answer = client
            .call(
                "send",
                json!({"account": "sales", "to": CONTACT, "text": text, "wait": false}),
            )
            .await;
        match answer {
            Ok(v) => accepted.push((
                v["id"].as_str().unwrap().to_owned(),
                format!("{prefix}-{i}"),
            )),
            Err(e) => refused.push(e.to_string()),
        }
    }
    (accepted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_clearly_loses_nothing_and_recovers() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a small filesystem needs root");
        return;
    }
    let mut env = Env::new(&["sales"]).await;
    let disk = SmallDisk::mount(&env.state_dir(), "24m");
    env.start_daemon().await;
    env.pair("sales").await;
    env.wait_state("sales", "connected", CONNECT).await;

    // Offline, so the sends stay in the outbox: the disk fills up in the
    // middle of a burst from four clients.
    let jid = env.jid("sales").await;
    env.mock.refuse(3600);
    env.mock.fault(&jid, mock_wa::Fault::Close);
    env.wait_state("sales", "reconnecting", CONNECT).await;
    let filler = {
        let mut sends = tokio::task::JoinSet::new();
        for c in 0..4 {
            sends.spawn(burst(env.socket(), format!("c{c}"), 60));
        }
        // Most of the space goes while the burst runs.
        let filler = disk.fill();
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        while let Some(done) = sends.join_next().await {
            let (a, r) = done.unwrap();
            accepted.extend(a);
            refused.extend(r);
        }
        eprintln!(
            "{} sends accepted, {} refused on the full disk",
            accepted.len(),
            refused.len()
        );
        assert!(!refused.is_empty(), "some sends are refused on a full disk");
        for why in &refused {
            assert!(why.contains("disk full"), "a clear refusal: {why}");
            assert!(why.contains("messages.db"), "naming the file: {why}");
        }
        let h = health(&env).await;
        let reasons = h["accounts"][0]["health"]["reasons"].to_string();
        assert_eq!(h["accounts"][0]["health"]["level"], "critical", "{h}");
        assert!(reasons.contains("disk full: "), "{reasons}");
        assert!(
            env.call("status", json!({})).await.is_ok(),
            "status answers"
        );
        (filler, accepted)
    };
    let (filler, accepted) = filler;

    // SIGTERM on the full disk: out within 5 s.
    let started = Instant::now();
    let mut child = env.daemon.take().unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("walinkd exits within 5 s of SIGTERM on a full disk")
        .unwrap();
    eprintln!("stopped in {:?}", started.elapsed());

    // Started on the still-full disk: it stays up, says why, and neither
    // exits nor moves anything aside.
    let listed = names(&env.state_dir());
    let log = env.dir.path().join("walinkd.log");
    let logged_before = std::fs::read_to_string(&log).unwrap().len();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_walinkd"))
        .arg("--config")
        .arg(env.config_path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    env.daemon = Some(child);
    eventually(CONNECT, "walinkd says the disk is full", || async {
        let text = std::fs::read_to_string(&log).unwrap();
        text[logged_before..].contains("disk full").then_some(())
    })
    .await;
    assert!(
        env.daemon.as_mut().unwrap().try_wait().unwrap().is_none(),
        "walinkd waits for space instead of exiting"
    );
    assert_eq!(names(&env.state_dir()), listed, "nothing moved aside");

    // Space comes back: it goes on by itself, connects and sends what it
    // accepted, each once.
    std::fs::remove_file(&filler).unwrap();
    env.mock.refuse(0);
    eventually(CONNECT, "walinkd answers on its socket", || async {
        env.call("status", json!({})).await.ok()
    })
    .await;
    env.wait_state("sales", "connected", Duration::from_secs(120))
        .await;
    let wanted: std::collections::HashSet<String> =
        accepted.iter().map(|(id, _)| id.clone()).collect();
    eventually(
        Duration::from_secs(120),
        "every accepted send arrives",
        || async {
            let got: std::collections::HashSet<String> = env
                .mock
                .inbox(CONTACT)
                .await
                .into_iter()
                .map(|e| e.id)
                .collect();
            wanted.is_subset(&got).then_some(())
        },
    )
    .await;
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for entry in env.mock.inbox(CONTACT).await {
        *seen.entry(entry.id).or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "nothing twice: {seen:?}");
    eventually(
        CONNECT,
        "health is no longer critical for the disk",
        || async {
            let h = health(&env).await;
            (!h["accounts"][0]["health"]["reasons"]
                .to_string()
                .contains("disk full"))
            .then_some(())
        },
    )
    .await;
    env.stop_daemon(libc::SIGTERM).await;
    drop(disk);
}
