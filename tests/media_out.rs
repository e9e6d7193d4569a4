//! Media going out, end to end: the real `walink send --file` hands the
//! file to the real walinkd, which commits it with the send in messages.db,
//! uploads it to mock-wa's media host through its own HTTP client and sends
//! the message; the mock's contact fetches and decrypts the blob and
//! records what it found.

mod harness;

use std::time::Duration;

use harness::{Env, eventually};
use mock_wa::messaging::InboxEntry;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CONNECT: Duration = Duration::from_secs(40);
const CONTACT: &str = "15557654321";

/// `Env::paired`, with walinkd's HTTP client pointed at the mock's media
/// host over plain HTTP (debug builds only honour that), and `daemon` as
/// extra `[daemon]` config.
async fn paired(daemon: &str) -> Env {
    let mut env = Env::new(&["sales"]).await;
    if !daemon.is_empty() {
        let config = std::fs::read_to_string(env.config_path()).unwrap();
        let config = config.replacen("[daemon]\n", &format!("[daemon]\n{daemon}\n"), 1);
        std::fs::write(env.config_path(), config).unwrap();
    }
    let media = env.mock.media_host();
    let host = media.split(':').next().unwrap().to_string();
    env.daemon_env
        .push(("WALINK_TEST_HOSTS".into(), format!("{host}={media}")));
    env.start_daemon().await;
    env.pair("sales").await;
    env.wait_state("sales", "connected", CONNECT).await;
    env
}

fn hex_sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A PNG header and enough bytes after it to take several parts.
fn png(len: usize) -> Vec<u8> {
    let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    data.extend((0..len).map(|i| (i * 31 % 251) as u8));
    data
}

async fn inbox(env: &Env) -> Vec<InboxEntry> {
    env.mock.inbox(CONTACT).await
}

/// Waits until the contact has message `id`; returns every entry it has.
async fn delivered(env: &Env, id: &str) -> Vec<InboxEntry> {
    eventually(CONNECT, &format!("the contact receives {id}"), || async {
        let entries = inbox(env).await;
        entries.iter().any(|e| e.id == id).then_some(entries)
    })
    .await
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_reaches_the_contact_as_the_very_file_sent() {
    let env = paired("").await;
    // 200 KB: several `send_file_part` calls.
    let photo = png(200_000);
    let path = env.dir.path().join("cat.png");
    std::fs::write(&path, &photo).unwrap();
    let sent = env
        .walink_json(&[
            "send",
            "sales",
            &format!("+{CONTACT}"),
            "--file",
            path.to_str().unwrap(),
            "--caption",
            "our cat",
        ])
        .await;
    // The contact's delivery receipt can beat the answer.
    assert!(
        ["server_ack", "delivered", "read"].contains(&sent["status"].as_str().unwrap_or("")),
        "{sent}"
    );
    let id = sent["id"].as_str().unwrap();

    let entries = delivered(&env, id).await;
    assert_eq!(entries.len(), 1);
    let media = entries[0]
        .media
        .as_ref()
        .expect("the message carries media");
    let media = serde_json::to_value(media).unwrap();
    assert_eq!(media["kind"], "image", "{media}");
    assert_eq!(media["mimetype"], "image/png");
    assert_eq!(media["caption"], "our cat");
    assert_eq!(media["size"], photo.len());
    assert_eq!(media["sha256"], hex_sha256(&photo));
    assert_eq!(media["hashes_match"], true, "{media}");

    // The history shows it as sent, with what it says of the file.
    let page = env
        .walink_json(&["messages", "sales", "--chat", CONTACT])
        .await;
    let mine = &page["messages"][0];
    assert_eq!(mine["id"], id);
    assert_eq!(mine["from_me"], true);
    assert_eq!(mine["kind"], "image");
    assert_eq!(mine["text"], "our cat");
    assert_eq!(mine["media"]["sha256"], hex_sha256(&photo), "{mine}");
    assert_eq!(mine["media"]["size"], photo.len());
    assert_eq!(mine["media"]["mimetype"], "image/png");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_as_a_document_keeps_its_name() {
    let env = paired("").await;
    let data = png(1000);
    let path = env.dir.path().join("floor plan.png");
    std::fs::write(&path, &data).unwrap();
    let sent = env
        .walink_json(&[
            "send",
            "sales",
            CONTACT,
            "--file",
            path.to_str().unwrap(),
            "--as",
            "document",
        ])
        .await;
    let id = sent["id"].as_str().unwrap();
    let entries = delivered(&env, id).await;
    let media = serde_json::to_value(entries[0].media.as_ref().unwrap()).unwrap();
    assert_eq!(media["kind"], "document", "{media}");
    assert_eq!(media["filename"], "floor plan.png");
    assert_eq!(media["mimetype"], "image/png");
    assert_eq!(media["sha256"], hex_sha256(&data));
    assert_eq!(media["hashes_match"], true, "{media}");
    assert!(media.get("caption").is_none(), "no caption given: {media}");
    let page = env.walink_json(&["messages", "sales"]).await;
    assert_eq!(page["messages"][0]["kind"], "document");
    assert_eq!(page["messages"][0]["media"]["filename"], "floor plan.png");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_accepted_before_a_kill_9_is_delivered_once_after_the_restart() {
    let mut env = paired("").await;
    let jid = env.jid("sales").await;
    env.mock.refuse(3600);
    env.mock.fault(&jid, mock_wa::Fault::Close);
    env.wait_state("sales", "reconnecting", CONNECT).await;

    let photo = png(120_000);
    let path = env.dir.path().join("receipt.png");
    std::fs::write(&path, &photo).unwrap();
    let out = env
        .walink(&[
            "send",
            "sales",
            CONTACT,
            "--file",
            path.to_str().unwrap(),
            "--caption",
            "your receipt",
            "--no-wait",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let outbox = env.walink_json(&["outbox", "sales"]).await;
    assert_eq!(outbox["messages"][0]["id"], id.as_str(), "{outbox}");
    assert_eq!(outbox["messages"][0]["status"], "queued");

    // Accepted, never uploaded: a crash now, and the file the CLI read is
    // gone too; what walinkd committed is all there is.
    env.stop_daemon(libc::SIGKILL).await;
    std::fs::remove_file(&path).unwrap();
    env.mock.refuse(0);
    env.start_daemon().await;
    env.wait_state("sales", "connected", CONNECT).await;

    let entries = delivered(&env, &id).await;
    let media = serde_json::to_value(entries[0].media.as_ref().unwrap()).unwrap();
    assert_eq!(media["sha256"], hex_sha256(&photo), "{media}");
    assert_eq!(media["hashes_match"], true, "{media}");
    assert_eq!(media["caption"], "your receipt");
    eventually(CONNECT, "the outbox is empty", || async {
        (env.status("sales").await["outbox"]["queued"] == 0).then_some(())
    })
    .await;

    // Acked: another crash and restart send nothing again.
    env.stop_daemon(libc::SIGKILL).await;
    env.start_daemon().await;
    env.wait_state("sales", "connected", CONNECT).await;
    let marker = env
        .walink(&["send", "sales", CONTACT, "after the second restart"])
        .await;
    assert!(marker.status.success(), "{}", stderr(&marker));
    let marker = String::from_utf8(marker.stdout).unwrap().trim().to_string();
    let entries = delivered(&env, &marker).await;
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [id.as_str(), marker.as_str()], "each message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_or_missing_file_is_refused_and_nothing_is_queued() {
    let env = paired("send_file_max_mib = 1").await;
    let big = env.dir.path().join("big.png");
    std::fs::write(&big, png((1 << 20) + 1)).unwrap();
    let out = env
        .walink(&["send", "sales", CONTACT, "--file", big.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(3), "walinkd refuses it");
    let why = stderr(&out);
    assert!(
        why.contains("up to 1.0 MiB") && why.contains("daemon.send_file_max_mib"),
        "{why}"
    );

    let missing = env.dir.path().join("nowhere.png");
    let out = env
        .walink(&[
            "send",
            "sales",
            CONTACT,
            "--file",
            missing.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(64), "a usage error");
    let why = stderr(&out);
    assert!(
        why.contains("cannot read") && why.contains("nowhere.png"),
        "{why}"
    );

    // A JSON client that names a transfer it never sent is refused too.
    let err = env
        .call(
            "send",
            json!({"account": "sales", "to": CONTACT, "file": {"transfer": "t1", "name": "a.png"}}),
        )
        .await
        .unwrap_err();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("no file transfer"),
        "{err}"
    );

    let outbox = env.walink_json(&["outbox", "sales", "--all"]).await;
    assert_eq!(outbox["messages"], Value::Array(vec![]), "{outbox}");
    let page = env.walink_json(&["messages", "sales"]).await;
    assert_eq!(page["messages"], Value::Array(vec![]), "{page}");
    assert!(inbox(&env).await.is_empty());
}

/// Bytes that start as an MP4 file (an `ftyp` box) and are this file's own.
fn mp4(len: usize) -> Vec<u8> {
    let mut data = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    data.extend((0..len).map(|i| (i * 13 % 241) as u8));
    data
}

/// Bytes that start as an Ogg Opus file (`OggS`, then `OpusHead`).
fn ogg_opus(len: usize) -> Vec<u8> {
    let mut data = b"OggS\0\x02\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\x01\x13OpusHead".to_vec();
    data.extend((0..len).map(|i| (i * 17 % 239) as u8));
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_and_an_audio_file_reach_the_contact_as_the_files_sent() {
    let env = paired("").await;
    for (name, data, kind, mimetype, caption) in [
        (
            "clip.mp4",
            mp4(70_000),
            "video",
            "video/mp4",
            Some("our clip"),
        ),
        (
            "note.ogg",
            ogg_opus(9_000),
            "audio",
            "audio/ogg; codecs=opus",
            None,
        ),
    ] {
        let path = env.dir.path().join(name);
        std::fs::write(&path, &data).unwrap();
        let mut args = vec!["send", "sales", CONTACT, "--file", path.to_str().unwrap()];
        if let Some(caption) = caption {
            args.extend(["--caption", caption]);
        }
        let sent = env.walink_json(&args).await;
        let id = sent["id"].as_str().unwrap();
        let entries = delivered(&env, id).await;
        let entry = entries.iter().find(|e| e.id == id).unwrap();
        // The mock decrypts with the keys of the kind the message says: a
        // video or audio under another kind's keys would fail its MAC.
        let media = serde_json::to_value(entry.media.as_ref().unwrap()).unwrap();
        assert_eq!(media["kind"], kind, "{media}");
        assert_eq!(media["mimetype"], mimetype);
        assert_eq!(media["size"], data.len());
        assert_eq!(media["sha256"], hex_sha256(&data), "{media}");
        assert_eq!(media["hashes_match"], true, "{media}");
        assert_eq!(media.get("caption").and_then(Value::as_str), caption);
        let page = env.walink_json(&["messages", "sales"]).await;
        assert_eq!(page["messages"][0]["id"], id);
        assert_eq!(page["messages"][0]["kind"], kind);
    }
}
