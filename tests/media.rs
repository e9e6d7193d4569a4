//! Media in, end to end: a contact's photo, document, video and voice note
//! arrive from mock-wa (encrypted blobs on its media host), the real
//! walinkd fetches them through its own HTTP client (`WALINK_TEST_HOSTS`
//! points the host the server names at the mock's plain-HTTP listener),
//! decrypts and checks them, and writes them: on request (`walink media`)
//! and as they arrive (`auto_download`).

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use harness::{CLIENT_VERSION, Env, eventually};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CONNECT: Duration = Duration::from_secs(40);
const CONTACT: &str = "15557654321";

fn hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn photo() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()
}

const PDF: &[u8] = b"%PDF-1.4 an invoice, and more than one AES block of it";

/// The contact sends `data` as `kind`; returns the message id.
async fn deliver(
    env: &Env,
    kind: &str,
    mimetype: &str,
    filename: Option<&str>,
    data: &[u8],
) -> String {
    let phone = env.phone("sales").await;
    let request = mock_wa::messaging::MediaRequest {
        kind: kind.into(),
        mimetype: mimetype.into(),
        filename: filename.map(str::to_owned),
        caption: Some(format!("a {kind}")),
        data_base64: base64::engine::general_purpose::STANDARD.encode(data),
    };
    env.mock
        .deliver_media(CONTACT, &phone, &request, None)
        .await
        .expect("the mock delivers the media")
}

/// The stored messages, once `n` have arrived.
async fn messages(env: &Env, n: usize) -> Vec<Value> {
    let plus = format!("+{CONTACT}");
    eventually(CONNECT, "the messages are stored", || async {
        let page = env
            .walink_json(&["messages", "sales", "--chat", &plus])
            .await;
        let all = page["messages"].as_array().unwrap().clone();
        (all.len() >= n).then_some(all)
    })
    .await
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `walink media` run in `cwd` with `args` after the account and id.
async fn walink_media_in(env: &Env, cwd: &Path, id: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_walink"))
        .arg("--socket")
        .arg(env.socket())
        .args(["media", "sales", id])
        .args(args)
        .current_dir(cwd)
        .output()
        .await
        .expect("run walink media")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walink_media_writes_the_file_the_contact_sent() {
    let env = Env::paired(&["sales"], CONNECT).await;
    let photo = photo();
    let image = deliver(&env, "image", "image/jpeg", None, &photo).await;
    let document = deliver(
        &env,
        "document",
        "application/pdf",
        Some("invoice.pdf"),
        PDF,
    )
    .await;
    env.mock
        .deliver(CONTACT, &env.phone("sales").await, "just words", None)
        .await
        .unwrap();
    let stored = messages(&env, 3).await;
    let text = stored
        .iter()
        .find(|m| m["kind"] == "text")
        .expect("the text message")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        stored
            .iter()
            .all(|m| m["kind"] == "text" || m["media"]["path"].is_null()),
        "nothing is fetched unless asked: {stored:?}"
    );

    // Without -o: MESSAGE_ID.EXT in the current directory, path printed.
    let here = tempfile::tempdir().unwrap();
    let out = walink_media_in(&env, here.path(), &image, &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = here.path().join(format!("{image}.jpg"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        written.to_str().unwrap()
    );
    assert_eq!(hex(&std::fs::read(&written).unwrap()), hex(&photo));
    assert_eq!(mode(&written), 0o640);

    // -o FILE, relative to the current directory, with --json.
    let out = walink_media_in(&env, here.path(), &document, &["-o", "bill.pdf", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bill = here.path().join("bill.pdf");
    assert_eq!(result["path"], bill.to_str().unwrap());
    assert_eq!(result["kind"], "document");
    assert_eq!(result["filename"], "invoice.pdf");
    assert_eq!(result["mimetype"], "application/pdf");
    assert_eq!(result["size"], PDF.len());
    assert_eq!(result["sha256"], hex(PDF));
    assert_eq!(std::fs::read(&bill).unwrap(), PDF);
    assert_eq!(mode(&bill), 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(here.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "no partial file stays behind: {leftovers:?}"
    );

    // Clear errors, and walinkd goes on.
    let out = walink_media_in(&env, here.path(), "3EB0NOSUCHMESSAGE", &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("has no message 3EB0NOSUCHMESSAGE"), "{why}");
    let out = walink_media_in(&env, here.path(), &text, &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("is a text message; it has no file"), "{why}");
    assert_eq!(env.status("sales").await["state"], "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_and_a_voice_note_arrive_as_such_and_are_fetched_whole() {
    let env = Env::paired(&["sales"], CONNECT).await;
    let clip: Vec<u8> = b"\0\0\0\x18ftypmp42"
        .iter()
        .copied()
        .chain((0..40_000u32).map(|i| (i * 13 % 241) as u8))
        .collect();
    let note: Vec<u8> = b"OggS\0\x02"
        .iter()
        .copied()
        .chain((0..7_000u32).map(|i| (i * 17 % 239) as u8))
        .collect();
    let video = deliver(&env, "video", "video/mp4", None, &clip).await;
    let voice = deliver(&env, "voice", "audio/ogg; codecs=opus", None, &note).await;
    let stored = messages(&env, 2).await;
    let by_id = |id: &str| stored.iter().find(|m| m["id"] == id).unwrap().clone();
    let (v, n) = (by_id(&video), by_id(&voice));
    assert_eq!(v["kind"], "video", "{v}");
    assert_eq!(v["text"], "a video", "a video keeps its caption: {v}");
    assert_eq!(v["media"]["mimetype"], "video/mp4");
    assert_eq!(v["media"]["sha256"], hex(&clip));
    assert_eq!(n["kind"], "voice", "a ptt audio is a voice note: {n}");
    assert_eq!(n["media"]["mimetype"], "audio/ogg; codecs=opus");
    assert_eq!(n["media"]["sha256"], hex(&note));

    let here = tempfile::tempdir().unwrap();
    for (id, name, data, kind) in [
        (&video, "clip.mp4", &clip, "video"),
        (&voice, "note.ogg", &note, "voice"),
    ] {
        let out = walink_media_in(&env, here.path(), id, &["-o", name, "--json"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["kind"], kind, "{result}");
        assert_eq!(result["sha256"], hex(data));
        let written = std::fs::read(here.path().join(name)).unwrap();
        assert_eq!(hex(&written), hex(data), "{name} is the very file sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_to_the_client_in_parts_and_walinkd_keeps_no_copy() {
    let env = Env::paired(&["sales"], CONNECT).await;
    // Three parts of 36 KiB and a bit.
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 11 % 253) as u8).collect();
    let id = deliver(&env, "document", "application/pdf", Some("big.pdf"), &big).await;
    messages(&env, 1).await;
    let part = |transfer: &str, n: u32| serde_json::json!({"account": "sales", "id": id, "transfer": transfer, "part": n});
    let err = env.call("media_part", part("t1", 1)).await.unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("start again with part 0")
    );

    let mut got = Vec::new();
    let mut n = 0;
    loop {
        let r = env.call("media_part", part("t1", n)).await.expect("a part");
        assert_eq!(r["sha256"], hex(&big), "{r}");
        assert_eq!(r["size"], big.len());
        assert_eq!(r["kind"], "document");
        assert_eq!(r["filename"], "big.pdf");
        let data = r["data"].as_str().unwrap();
        assert!(data.len() <= 48 * 1024, "a part fits a line");
        got.extend(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        );
        n += 1;
        if n == r["parts"].as_u64().unwrap() as u32 {
            break;
        }
    }
    assert_eq!(n, 3);
    assert_eq!(hex(&got), hex(&big));
    // The last part ended the transfer, and the file walinkd held had no
    // name: nothing of it is left in the state directory.
    let err = env.call("media_part", part("t1", 3)).await.unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(env.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".fetch-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_media_dir_is_named_at_start_with_what_to_add() {
    let mut env = Env::new(&[]).await;
    // Not even root may create a directory in /proc.
    env.write_raw_config(
        "",
        &format!(
            "url = {:?}\nclient_version = {CLIENT_VERSION:?}",
            env.mock.ws_url()
        ),
        "[[account]]\nname = \"sales\"\nauto_download = [\"image\"]\nmedia_dir = \"/proc/walink-media\"\n",
    );
    env.start_daemon().await;
    let log = env.daemon_log();
    let line = log
        .lines()
        .find(|l| l.contains("media_dir_unwritable"))
        .unwrap_or_else(|| panic!("no warning about media_dir in {log}"));
    assert!(line.contains("/proc/walink-media"), "{line}");
    assert!(line.contains("ReadWritePaths=/proc/walink-media"), "{line}");
    // Only the automatic fetches need the directory: the account runs.
    assert_eq!(env.status("sales").await["name"], "sales");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_fails_names_the_host_and_keeps_nothing() {
    let mut env = Env::new(&[]).await;
    env.write_raw_config(
        "",
        &format!(
            "url = {:?}\nclient_version = {CLIENT_VERSION:?}\nconnect_timeout_secs = 3",
            env.mock.ws_url()
        ),
        "[[account]]\nname = \"sales\"\nauto_download = [\"image\"]\n",
    );
    // The media host is dialed as the server names it, over TLS: the mock's
    // listener speaks plain HTTP, so every fetch fails at the handshake.
    env.daemon_env.clear();
    env.start_daemon().await;
    env.pair("sales").await;
    env.wait_state("sales", "connected", CONNECT).await;
    let image = deliver(&env, "image", "image/jpeg", None, &photo()).await;
    env.mock
        .deliver(
            CONTACT,
            &env.phone("sales").await,
            "and a text after it",
            None,
        )
        .await
        .unwrap();
    // Receiving goes on while the automatic fetch fails, which is logged
    // and left to retry.
    let stored = messages(&env, 2).await;
    assert!(
        stored
            .iter()
            .all(|m| m["media"].is_null() || m["media"]["path"].is_null())
    );
    eventually(CONNECT, "the failed automatic fetch is logged", || async {
        let log = env.daemon_log();
        log.lines()
            .any(|l| {
                l.contains("fetching a received file failed") && l.contains("trying again in 5s")
            })
            .then_some(())
    })
    .await;
    let here = tempfile::tempdir().unwrap();
    let out = walink_media_in(&env, here.path(), &image, &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains(&format!("fetching the file of message {image} failed")),
        "{why}"
    );
    assert!(
        why.contains(&env.mock.media_host()),
        "names the host: {why}"
    );
    assert!(!why.contains("auth="), "never the route's token: {why}");
    assert_eq!(
        std::fs::read_dir(here.path()).unwrap().count(),
        0,
        "nothing is left"
    );
    assert_eq!(env.status("sales").await["state"], "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chosen_kinds_land_in_media_dir_as_they_arrive() {
    let mut env = Env::new(&[]).await;
    let media_dir = env.dir.path().join("media");
    env.write_raw_config(
        "",
        &format!(
            "url = {:?}\nclient_version = {CLIENT_VERSION:?}",
            env.mock.ws_url()
        ),
        &format!(
            "[[account]]\nname = \"sales\"\nmedia_dir = {media_dir:?}\n\
             auto_download = [\"image\"]\nauto_download_max_mib = 1\n"
        ),
    );
    env.start_daemon().await;
    env.pair("sales").await;
    env.wait_state("sales", "connected", CONNECT).await;

    let photo = photo();
    let big: Vec<u8> = (0..(1 << 20) + 1).map(|i: u32| (i % 253) as u8).collect();
    let image = deliver(&env, "image", "image/jpeg", None, &photo).await;
    let large = deliver(&env, "image", "image/png", None, &big).await;
    let document = deliver(
        &env,
        "document",
        "application/pdf",
        Some("invoice.pdf"),
        PDF,
    )
    .await;
    messages(&env, 3).await;
    let plus = format!("+{CONTACT}");
    let shown = eventually(CONNECT, "the image's JSON names where it is", || async {
        let page = env
            .walink_json(&["messages", "sales", "--chat", &plus])
            .await;
        let all = page["messages"].as_array().unwrap().clone();
        let img = all.iter().find(|m| m["id"] == image.as_str())?.clone();
        img["media"]["path"].is_string().then_some(all)
    })
    .await;
    let by_id = |id: &str| shown.iter().find(|m| m["id"] == id).unwrap().clone();
    let path = media_dir.join(format!("{image}.jpg"));
    assert_eq!(by_id(&image)["media"]["path"], path.to_str().unwrap());
    assert_eq!(hex(&std::fs::read(&path).unwrap()), hex(&photo));
    assert_eq!(mode(&path), 0o640);
    assert!(
        by_id(&large)["media"]["path"].is_null(),
        "over the size limit"
    );
    assert!(
        by_id(&document)["media"]["path"].is_null(),
        "not a chosen kind"
    );

    // What was left is still there to fetch.
    let here = tempfile::tempdir().unwrap();
    let out = walink_media_in(&env, here.path(), &large, &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        hex(&std::fs::read(here.path().join(format!("{large}.png"))).unwrap()),
        hex(&big)
    );
    let entries: Vec<_> = std::fs::read_dir(&media_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries,
        [format!("{image}.jpg")],
        "only the chosen file is in media_dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_gone_from_the_hosts_or_unlike_its_message_is_refused_and_nothing_is_kept() {
    use whatsapp_rust::waproto::buffa;
    use whatsapp_rust::waproto::whatsapp as wa;
    let env = Env::paired(&["sales"], CONNECT).await;
    let phone = env.phone("sales").await;
    let photo = photo();
    let sealed = wacore::upload::encrypt_media(&photo, wacore::download::MediaType::Image).unwrap();
    let stored = env
        .mock
        .state()
        .media
        .store("image", sealed.data_to_upload.clone());
    let image = |direct_path: &str, file_sha256: Vec<u8>| wa::Message {
        image_message: buffa::MessageField::some(wa::message::ImageMessage {
            mimetype: Some("image/jpeg".into()),
            direct_path: Some(direct_path.into()),
            media_key: Some(sealed.media_key.to_vec()),
            file_sha256: Some(file_sha256),
            file_enc_sha256: Some(sealed.file_enc_sha256.to_vec()),
            file_length: Some(photo.len() as u64),
            ..Default::default()
        }),
        ..Default::default()
    };
    let send = |m: wa::Message| {
        env.mock.deliver_message(
            CONTACT,
            &phone,
            m,
            None,
            mock_wa::messaging::Addressing::Lid,
        )
    };
    let gone = send(image(
        "/v/t62.7118-24/expired_n.enc?ccb=11-4",
        sealed.file_sha256.to_vec(),
    ))
    .await
    .unwrap();
    let forged = send(image(&stored.direct_path, vec![0xAB; 32]))
        .await
        .unwrap();
    let good = send(image(&stored.direct_path, sealed.file_sha256.to_vec()))
        .await
        .unwrap();
    messages(&env, 3).await;
    let here = tempfile::tempdir().unwrap();
    let host = env.mock.media_host();

    let out = walink_media_in(&env, here.path(), &gone, &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains(&format!("media host {host} answered HTTP 404")),
        "names the host and its answer: {why}"
    );
    assert!(why.contains("may have expired"), "{why}");
    assert_eq!(
        why.matches("answered HTTP 404").count(),
        2,
        "asked the server for a fresh route after the refusal: {why}"
    );

    let out = walink_media_in(&env, here.path(), &forged, &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains(&format!("the file from {host} has SHA-256 {}", hex(&photo)))
            && why.contains(&"ab".repeat(32)),
        "says what came and what the message said: {why}"
    );
    assert_eq!(
        std::fs::read_dir(here.path()).unwrap().count(),
        0,
        "nothing is kept"
    );

    // The same blob under the right hash is fine: nothing was spoiled.
    let out = walink_media_in(&env, here.path(), &good, &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(here.path().join(format!("{good}.jpg"))).unwrap(),
        photo
    );
}
