//! Media between whatsapp-rust's own client, unmodified, and the mock: the
//! client's HTTP reaches the mock's loopback media host (tests/common), the
//! contacts' media is really encrypted, and what the client uploads is
//! decrypted by the mock.

mod common;

use common::{admin_http, http_request, init_logging, media_request, paired_client};
use mock_wa::media::MediaKind;
use mock_wa::{MockConfig, MockHandle, MockServer};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use whatsapp_rust::buffa::MessageField;
use whatsapp_rust::download::MediaType;
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore_binary::Jid;
use whatsapp_rust::waproto::whatsapp as wa;

const CONTACT: &str = "15557654321";

async fn start() -> MockHandle {
    init_logging();
    MockServer::start(MockConfig::default())
        .await
        .expect("mock starts")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes that look like a small file and are not all alike.
fn file_bytes(header: &[u8], len: usize) -> Vec<u8> {
    let mut data = header.to_vec();
    data.extend((0..len).map(|i| (i * 7 % 251) as u8));
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_downloads_and_decrypts_a_contacts_image_and_document() {
    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;

    let image = file_bytes(b"\xff\xd8\xff\xe0JFIF", 40_000);
    let request = media_request("image", "image/jpeg", None, Some("a picture"), &image);
    let id = mock
        .deliver_media(CONTACT, &jid, &request, None)
        .await
        .expect("deliver image");
    let message = client.wait_message(&id).await;
    let got = message.image_message.as_option().expect("an image");
    assert_eq!(got.caption.as_deref(), Some("a picture"));
    assert_eq!(got.mimetype.as_deref(), Some("image/jpeg"));
    let downloaded = client
        .client
        .download(got)
        .await
        .expect("the client downloads and decrypts the image");
    assert_eq!(downloaded, image);
    assert_eq!(
        got.file_sha256.as_deref(),
        Some(&Sha256::digest(&downloaded)[..])
    );

    let document = file_bytes(b"%PDF-1.4\n", 3_000);
    let request = media_request(
        "document",
        "application/pdf",
        Some("report.pdf"),
        None,
        &document,
    );
    let id = mock
        .deliver_media(CONTACT, &jid, &request, None)
        .await
        .expect("deliver document");
    let message = client.wait_message(&id).await;
    let got = message.document_message.as_option().expect("a document");
    assert_eq!(got.file_name.as_deref(), Some("report.pdf"));
    let downloaded = client
        .client
        .download(got)
        .await
        .expect("the client downloads and decrypts the document");
    assert_eq!(downloaded, document);
    assert_eq!(got.file_length, Some(document.len() as u64));
    let stats = mock.stats();
    assert_eq!(stats.media_downloads, 2, "{stats:?}");
    assert_eq!(stats.media_refused, 0, "{stats:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_client_uploads_and_sends_is_decrypted_by_the_mock() {
    let mock = start().await;
    let (mut client, _jid) = paired_client(&mock).await;

    let image = file_bytes(b"\x89PNG\r\n\x1a\n", 20_000);
    let message = client
        .upload_message(image.clone(), "image/png", None, Some("look"))
        .await;
    let url = message
        .image_message
        .as_option()
        .and_then(|m| m.url.clone());
    let host = format!("https://{}/", mock.media_host());
    assert!(
        url.as_deref().is_some_and(|u| u.starts_with(&host)),
        "{url:?}"
    );
    let sent = client.send_acked(Jid::pn(CONTACT), message).await;

    let inbox = mock.inbox(CONTACT).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0].id, sent);
    assert_eq!(inbox[0].text, "look");
    let media = inbox[0]
        .media
        .clone()
        .expect("the entry describes the media");
    assert_eq!(media.mimetype, "image/png");
    assert_eq!(media.size, Some(image.len() as u64));
    assert_eq!(media.sha256, Some(hex(&Sha256::digest(&image))));
    assert!(media.hashes_match, "{media:?}");
    assert_eq!(media.error, None);
    assert_eq!(mock.stats().media_uploads, 1);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_and_a_voice_note_go_both_ways_under_their_own_keys() {
    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;

    let clip = file_bytes(b"\0\0\0\x18ftypmp42", 30_000);
    let request = media_request("video", "video/mp4", None, Some("a clip"), &clip);
    let id = mock
        .deliver_media(CONTACT, &jid, &request, None)
        .await
        .unwrap();
    let message = client.wait_message(&id).await;
    let got = message.video_message.as_option().expect("a video");
    assert_eq!(got.caption.as_deref(), Some("a clip"));
    let downloaded = client
        .client
        .download(got)
        .await
        .expect("download the video");
    assert_eq!(downloaded, clip);

    let note = file_bytes(b"OggS\0\x02", 6_000);
    let request = media_request("voice", "audio/ogg; codecs=opus", None, None, &note);
    let id = mock
        .deliver_media(CONTACT, &jid, &request, None)
        .await
        .unwrap();
    let message = client.wait_message(&id).await;
    let got = message.audio_message.as_option().expect("an audio message");
    assert_eq!(got.ptt, Some(true), "a voice note");
    let downloaded = client
        .client
        .download(got)
        .await
        .expect("download the voice note");
    assert_eq!(downloaded, note);

    // The client uploads each under its own kind's keys; the mock decrypts
    // each with the keys of the kind the message names.
    for (kind, data, mimetype) in [
        (MediaType::Video, &clip, "video/mp4"),
        (MediaType::Audio, &note, "audio/ogg; codecs=opus"),
    ] {
        let up = client
            .client
            .upload(data.clone(), kind, UploadOptions::default())
            .await
            .expect("upload");
        let mut message = wa::Message::default();
        if kind == MediaType::Video {
            message.video_message = MessageField::some(wa::message::VideoMessage {
                url: Some(up.url),
                mimetype: Some(mimetype.into()),
                file_sha256: Some(up.file_sha256.to_vec()),
                file_length: Some(up.file_length),
                media_key: Some(up.media_key.to_vec()),
                file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                direct_path: Some(up.direct_path),
                ..Default::default()
            });
        } else {
            message.audio_message = MessageField::some(wa::message::AudioMessage {
                url: Some(up.url),
                mimetype: Some(mimetype.into()),
                file_sha256: Some(up.file_sha256.to_vec()),
                file_length: Some(up.file_length),
                ptt: Some(true),
                media_key: Some(up.media_key.to_vec()),
                file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                direct_path: Some(up.direct_path),
                ..Default::default()
            });
        }
        let sent = client.send_acked(Jid::pn(CONTACT), message).await;
        let inbox = mock.inbox(CONTACT).await;
        let entry = inbox.iter().find(|e| e.id == sent).expect("recorded");
        let media = entry.media.clone().expect("the entry describes the media");
        assert_eq!(media.mimetype, mimetype);
        assert_eq!(media.sha256, Some(hex(&Sha256::digest(data))), "{media:?}");
        assert!(media.hashes_match, "{media:?}");
    }
    assert_eq!(
        inbox_kinds(&mock).await,
        [MediaKind::Video, MediaKind::Voice],
        "an audio message with ptt is a voice note"
    );
    client.shutdown().await;
}

async fn inbox_kinds(mock: &MockHandle) -> Vec<MediaKind> {
    mock.inbox(CONTACT)
        .await
        .into_iter()
        .filter_map(|e| e.media.map(|m| m.kind))
        .collect()
}

/// One plain request to the media host: (status, body).
async fn media_http(mock: &MockHandle, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
    http_request(&mock.media_host(), method, target, &[], body)
        .await
        .expect("the media host answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_delivers_media_and_the_media_host_refuses_bad_uploads() {
    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;
    let doc = file_bytes(b"PK\x03\x04", 1_000);
    let request = media_request("document", "application/zip", Some("a.zip"), None, &doc);
    let (status, body) = admin_http(
        &mock,
        "POST",
        "/admin/deliver",
        Some(json!({"from": CONTACT, "to": jid, "id": "M1", "media": request})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"id": "M1"})));
    let message = client.wait_message("M1").await;
    let got = message.document_message.as_option().expect("a document");
    let direct_path = got.direct_path.clone().expect("direct path");
    assert_eq!(client.client.download(got).await.expect("download"), doc);

    // The blob as stored is the encrypted one, served by direct path.
    let (status, blob) = media_http(&mock, "GET", &direct_path, b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        Some(&Sha256::digest(&blob)[..]),
        got.file_enc_sha256.as_deref()
    );
    let (status, _) = media_http(&mock, "GET", "/v/t62.7119-24/1_2_n.enc", b"").await;
    assert_eq!(status, 404);
    // An upload needs an auth token media_conn issued.
    let token = {
        use base64::Engine as _;
        base64::prelude::BASE64_URL_SAFE_NO_PAD.encode(Sha256::digest(b"blob"))
    };
    let forged = format!("/mms/image/{token}?auth=forged&token={token}");
    let (status, _) = media_http(&mock, "POST", &forged, b"blob").await;
    assert_eq!(status, 401);

    let (status, reply) = admin_http(
        &mock,
        "POST",
        "/admin/deliver",
        Some(json!({"from": CONTACT, "to": jid, "media": {
            "kind": "sticker", "mimetype": "image/webp", "data_base64": "AAAA"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        reply["error"].as_str().unwrap().contains("sticker"),
        "{reply}"
    );

    // What the client sends shows in the contact's inbox with its media.
    let message = client
        .upload_message(doc.clone(), "application/zip", Some("back.zip"), None)
        .await;
    client.send_acked(Jid::pn(CONTACT), message).await;
    let (status, inbox) = admin_http(
        &mock,
        "GET",
        &format!("/admin/inbox?contact={CONTACT}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let media = &inbox[0]["media"];
    assert_eq!(media["kind"], json!("document"));
    assert_eq!(media["filename"], json!("back.zip"));
    assert_eq!(media["size"], json!(doc.len()));
    assert_eq!(media["sha256"], json!(hex(&Sha256::digest(&doc))));
    assert_eq!(media["hashes_match"], json!(true));
    client.shutdown().await;
}
