//! Groups between whatsapp-rust's own client, unmodified, and the mock's
//! contacts: sender keys both ways, group metadata, receipts.

mod common;

use common::{init_logging, media_request, paired_client};
use mock_wa::messaging::ReceiptKind;
use mock_wa::{MockConfig, MockHandle, MockServer};
use std::time::Duration;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::wacore::proto_helpers::MessageBuilderExt as _;
use whatsapp_rust::wacore_binary::Jid;
use whatsapp_rust::waproto::whatsapp as wa;

const ALICE: &str = "15557654321";
const BOB: &str = "15557654322";
const WAIT: Duration = Duration::from_secs(30);

async fn start() -> MockHandle {
    init_logging();
    MockServer::start(MockConfig::default())
        .await
        .expect("mock starts")
}

/// A group post in a `Messages` event: (id, chat, sender user, text).
fn group_text(event: &Event) -> Option<(String, Jid, String, String)> {
    let Event::Messages(batch) = event else {
        return None;
    };
    batch.iter().find_map(|m| {
        let text = m.message.conversation.clone()?;
        Some((
            m.info.id.to_string(),
            m.info.source.chat.clone(),
            m.info.source.sender.user.to_string(),
            text,
        ))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_post_to_the_client_and_the_client_posts_to_the_members() {
    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;
    let group: Jid = mock
        .create_group("Team", &[ALICE, BOB], &jid)
        .await
        .expect("group created")
        .parse()
        .expect("group JID");
    assert_eq!(group.server.to_string(), "g.us");

    // Each member's first post carries its sender key; the second does not.
    for (from, text) in [(ALICE, "hi all"), (BOB, "hello from bob"), (ALICE, "again")] {
        let id = mock
            .post_to_group(from, &group.to_string(), text, None)
            .await
            .expect("post");
        let (got_id, chat, sender, got_text) =
            client.wait_event(WAIT, "group Messages", group_text).await;
        assert_eq!(got_id, id);
        assert_eq!(chat, group);
        // LID-addressed, as groups are on the real network.
        assert_eq!(sender, mock.lid_of(from));
        assert_eq!(got_text, text);
    }

    let metadata = client
        .client
        .groups()
        .get_metadata(&group)
        .await
        .expect("the client reads the group's metadata");
    assert_eq!(metadata.subject, "Team");
    let account = jid.split([':', '@']).next().unwrap().to_string();
    let mut members: Vec<(String, String)> = metadata
        .participants
        .iter()
        .map(|p| {
            assert!(p.jid.is_lid(), "{:?}", p.jid);
            let phone = p.phone_number.as_ref().expect("phone alternate");
            (p.jid.user.to_string(), phone.user.to_string())
        })
        .collect();
    members.sort();
    let mut expected: Vec<(String, String)> = [ALICE, BOB, account.as_str()]
        .iter()
        .map(|p| (mock.lid_of(p), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(members, expected);

    for text in ["hello team", "second post"] {
        let sent = client
            .client
            .send_message(group.clone(), wa::Message::text(text))
            .await
            .expect("send completes")
            .message_id;
        // The mock writes its ack before the members' receipts, but the
        // client may hand them to the app in either order: waiting for the
        // ack first (`send_acked`) would skip a receipt that came before it.
        let mut acked = false;
        let mut from_members = Vec::new();
        while !acked || from_members.len() < 2 {
            let receipt = client
                .wait_event(
                    WAIT,
                    "ServerAck and member delivery Receipts",
                    |e| match e {
                        Event::ServerAck(a) if a.id == sent => Some(None),
                        Event::Receipt(r) if r.message_ids.contains(&sent) => Some(Some(r.clone())),
                        _ => None,
                    },
                )
                .await;
            let Some(r) = receipt else {
                acked = true;
                continue;
            };
            assert_eq!(r.r#type, ReceiptType::Delivered);
            assert_eq!(r.source.chat, group);
            from_members.push(r.source.sender.user.to_string());
        }
        from_members.sort();
        let mut lids = vec![mock.lid_of(ALICE), mock.lid_of(BOB)];
        lids.sort();
        assert_eq!(from_members, lids);
    }
    let posts = mock.group_inbox(&group.to_string()).await;
    let texts: Vec<&str> = posts.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["hello team", "second post"], "{posts:?}");
    assert!(
        posts
            .iter()
            .all(|p| p.from == format!("{account}@s.whatsapp.net"))
    );

    // A member reads the first post.
    mock.group_receipt(ALICE, &group.to_string(), &posts[0].id, ReceiptKind::Read)
        .await
        .expect("read receipt");
    let read = client
        .wait_event(WAIT, "read Receipt", |e| match e {
            Event::Receipt(r) if r.r#type == ReceiptType::Read => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(read.message_ids, [posts[0].id.clone()]);
    assert_eq!(read.source.chat, group);
    assert_eq!(read.source.sender.user, mock.lid_of(ALICE));
    let stats = mock.messaging().expect("messaging").stats();
    assert_eq!(stats.decrypt_failures, 0, "{stats:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_goes_both_ways_in_a_group() {
    use sha2::{Digest as _, Sha256};
    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;
    let group = mock
        .create_group("Photos", &[ALICE], &jid)
        .await
        .expect("group created");
    let photo: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let media = media_request("image", "image/jpeg", None, Some("from alice"), &photo);
    let id = mock
        .post_to_group(ALICE, &group, "", Some(&media))
        .await
        .expect("post");
    let message = client.wait_message(&id).await;
    let image = message.image_message.as_option().expect("an image");
    assert_eq!(image.caption.as_deref(), Some("from alice"));
    let downloaded = client.client.download(image).await.expect("download");
    assert_eq!(downloaded, photo);

    let mine = b"GIF89a a tiny picture of mine".to_vec();
    let message = client
        .upload_message(mine.clone(), "image/gif", None, None)
        .await;
    client
        .send_acked(group.parse().expect("group JID"), message)
        .await;
    let posts = mock.group_inbox(&group).await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    let summary = posts[0].media.clone().expect("media summary");
    assert_eq!(summary.mimetype, "image/gif");
    assert_eq!(summary.size, Some(mine.len() as u64));
    let hex: String = Sha256::digest(&mine)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(summary.sha256, Some(hex));
    assert!(summary.hashes_match);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_creates_groups_posts_to_them_and_lists_their_inbox() {
    use common::admin_http;
    use serde_json::json;

    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;
    let (status, body) = admin_http(
        &mock,
        "POST",
        "/admin/groups",
        Some(json!({"subject": "Ops", "members": [ALICE, BOB], "with_account": jid})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let group = body["jid"].as_str().expect("jid").to_string();
    assert!(group.ends_with("@g.us"), "{group}");

    let (status, body) = admin_http(
        &mock,
        "POST",
        "/admin/deliver",
        Some(json!({"from": BOB, "group": group, "text": "over http", "id": "G1"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"id": "G1"})));
    let (id, chat, sender, text) = client.wait_event(WAIT, "group Messages", group_text).await;
    assert_eq!(
        (id.as_str(), sender, text.as_str()),
        ("G1", mock.lid_of(BOB), "over http")
    );
    assert_eq!(chat.to_string(), group);

    let sent = client
        .send_acked(chat, wa::Message::text("reply over the wire"))
        .await;
    let (status, inbox) =
        admin_http(&mock, "GET", &format!("/admin/inbox?group={group}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(inbox[0]["id"], json!(sent));
    assert_eq!(inbox[0]["text"], json!("reply over the wire"));
    let (status, body) = admin_http(
        &mock,
        "POST",
        "/admin/receipt",
        Some(json!({"from": BOB, "group": group, "id": sent, "kind": "read"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let read = client
        .wait_event(WAIT, "read Receipt", |e| match e {
            Event::Receipt(r) if r.r#type == ReceiptType::Read => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(read.message_ids, [sent]);
    assert_eq!(read.source.sender.user, mock.lid_of(BOB));

    // Bad input gets a 400 that says what is wrong.
    for (body, needle) in [
        (
            json!({"subject": "", "members": [ALICE], "with_account": jid}),
            "subject",
        ),
        (
            json!({"subject": "x", "members": [], "with_account": jid}),
            "member",
        ),
        (
            json!({"subject": "x", "members": [ALICE], "with_account": "15559999999"}),
            "account",
        ),
    ] {
        let (status, reply) = admin_http(&mock, "POST", "/admin/groups", Some(body)).await;
        assert_eq!(status, 400);
        assert!(reply["error"].as_str().unwrap().contains(needle), "{reply}");
    }
    let (status, reply) = admin_http(
        &mock,
        "POST",
        "/admin/deliver",
        Some(json!({"from": "15550001111", "group": group, "text": "intruder"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        reply["error"].as_str().unwrap().contains("not a member"),
        "{reply}"
    );
    client.shutdown().await;
}
