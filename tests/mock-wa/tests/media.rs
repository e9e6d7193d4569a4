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
