//! Media between whatsapp-rust's own client, unmodified, and the mock: the
//! client's HTTP reaches the mock's loopback media host (tests/common), the
//! contacts' media is really encrypted, and what the client uploads is
//! decrypted by the mock.

mod common;

use common::{init_logging, paired_client};
use mock_wa::messaging::MediaRequest;
use mock_wa::{MockConfig, MockHandle, MockServer};
use sha2::{Digest as _, Sha256};
use std::time::Duration;
use whatsapp_rust::buffa::MessageField;
use whatsapp_rust::download::MediaType;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore_binary::Jid;
use whatsapp_rust::waproto::whatsapp as wa;

const CONTACT: &str = "15557654321";
const WAIT: Duration = Duration::from_secs(30);

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

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::prelude::BASE64_STANDARD.encode(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_downloads_and_decrypts_a_contacts_image_and_document() {
    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;

    let image = file_bytes(b"\xff\xd8\xff\xe0JFIF", 40_000);
    let image_id = mock
        .deliver_media(
            CONTACT,
            &jid,
            &MediaRequest {
                kind: "image".into(),
                mimetype: "image/jpeg".into(),
                filename: None,
                caption: Some("a picture".into()),
                data_base64: b64(&image),
            },
            None,
        )
        .await
        .expect("deliver image");
    let got = client
        .wait_event(WAIT, "image message", |e| match e {
            Event::Messages(batch) => batch
                .iter()
                .find(|m| m.info.id == image_id)
                .and_then(|m| m.message.image_message.as_option().cloned()),
            _ => None,
        })
        .await;
    assert_eq!(got.caption.as_deref(), Some("a picture"));
    assert_eq!(got.mimetype.as_deref(), Some("image/jpeg"));
    let downloaded = client
        .client
        .download(&got)
        .await
        .expect("the client downloads and decrypts the image");
    assert_eq!(downloaded, image);
    assert_eq!(
        got.file_sha256.as_deref(),
        Some(&Sha256::digest(&downloaded)[..])
    );

    let document = file_bytes(b"%PDF-1.4\n", 3_000);
    let doc_id = mock
        .deliver_media(
            CONTACT,
            &jid,
            &MediaRequest {
                kind: "document".into(),
                mimetype: "application/pdf".into(),
                filename: Some("report.pdf".into()),
                caption: None,
                data_base64: b64(&document),
            },
            None,
        )
        .await
        .expect("deliver document");
    let got = client
        .wait_event(WAIT, "document message", |e| match e {
            Event::Messages(batch) => batch
                .iter()
                .find(|m| m.info.id == doc_id)
                .and_then(|m| m.message.document_message.as_option().cloned()),
            _ => None,
        })
        .await;
    assert_eq!(got.file_name.as_deref(), Some("report.pdf"));
    let downloaded = client
        .client
        .download(&got)
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
    let upload = client
        .client
        .upload(image.clone(), MediaType::Image, UploadOptions::default())
        .await
        .expect("the upload to the mock's media host succeeds");
    assert!(
        upload
            .url
            .starts_with(&format!("https://{}/", mock.media_host())),
        "{}",
        upload.url
    );
    let message = wa::Message {
        image_message: MessageField::some(wa::message::ImageMessage {
            url: Some(upload.url.clone()),
            mimetype: Some("image/png".into()),
            caption: Some("look".into()),
            file_sha256: Some(upload.file_sha256.to_vec()),
            file_length: Some(upload.file_length),
            media_key: Some(upload.media_key.to_vec()),
            file_enc_sha256: Some(upload.file_enc_sha256.to_vec()),
            direct_path: Some(upload.direct_path.clone()),
            media_key_timestamp: Some(upload.media_key_timestamp),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sent = client
        .client
        .send_message(Jid::pn(CONTACT), message)
        .await
        .expect("send completes");
    client
        .wait_event(WAIT, "ServerAck", |e| match e {
            Event::ServerAck(a) if a.id == sent.message_id => Some(()),
            _ => None,
        })
        .await;

    let inbox = mock.inbox(CONTACT).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0].id, sent.message_id);
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

/// One raw HTTP request to the media host: (status, body).
async fn media_http(mock: &MockHandle, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(mock.media_host())
        .await
        .expect("media host connects");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        mock.media_host(),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    tcp.write_all(body).await.expect("write");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let status = std::str::from_utf8(&raw[..split])
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, raw[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_delivers_media_and_the_media_host_refuses_bad_uploads() {
    use common::admin_http;
    use serde_json::json;

    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;
    let doc = file_bytes(b"PK\x03\x04", 1_000);
    let (status, body) = admin_http(
        &mock,
        "POST",
        "/admin/deliver",
        Some(json!({"from": CONTACT, "to": jid, "id": "M1", "media": {
            "kind": "document", "mimetype": "application/zip",
            "filename": "a.zip", "data_base64": b64(&doc)}})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"id": "M1"})));
    let got = client
        .wait_event(WAIT, "document message", |e| match e {
            Event::Messages(batch) => batch
                .iter()
                .find(|m| m.info.id == "M1")
                .and_then(|m| m.message.document_message.as_option().cloned()),
            _ => None,
        })
        .await;
    let direct_path = got.direct_path.clone().expect("direct path");
    assert_eq!(client.client.download(&got).await.expect("download"), doc);

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
    let (status, _) = media_http(
        &mock,
        "POST",
        &format!("/mms/image/{token}?auth=forged&token={token}"),
        b"blob",
    )
    .await;
    assert_eq!(status, 401);

    let (status, reply) = admin_http(
        &mock,
        "POST",
        "/admin/deliver",
        Some(json!({"from": CONTACT, "to": jid, "media": {
            "kind": "video", "mimetype": "video/mp4", "data_base64": "AAAA"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        reply["error"].as_str().unwrap().contains("video"),
        "{reply}"
    );

    // What the client sends shows in the contact's inbox with its media.
    let up = client
        .client
        .upload(doc.clone(), MediaType::Document, UploadOptions::default())
        .await
        .expect("upload");
    let message = wa::Message {
        document_message: MessageField::some(wa::message::DocumentMessage {
            url: Some(up.url),
            mimetype: Some("application/zip".into()),
            file_name: Some("back.zip".into()),
            file_sha256: Some(up.file_sha256.to_vec()),
            file_length: Some(up.file_length),
            media_key: Some(up.media_key.to_vec()),
            file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
            direct_path: Some(up.direct_path),
            media_key_timestamp: Some(up.media_key_timestamp),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sent = client
        .client
        .send_message(Jid::pn(CONTACT), message)
        .await
        .expect("send");
    client
        .wait_event(WAIT, "ServerAck", |e| match e {
            Event::ServerAck(a) if a.id == sent.message_id => Some(()),
            _ => None,
        })
        .await;
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
