//! Messaging between whatsapp-rust's own client, unmodified, and the
//! mock's simulated contacts.

mod common;

use common::{TestClient, admin_http, init_logging, paired_client};
use mock_wa::messaging::{MessagingConfig, ReceiptKind};
use mock_wa::{MockConfig, MockHandle, MockServer};
use std::time::Duration;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::wacore_binary::Jid;

const CONTACT: &str = "15557654321";
const WAIT: Duration = Duration::from_secs(30);

async fn start() -> MockHandle {
    init_logging();
    MockServer::start(MockConfig::default())
        .await
        .expect("mock starts")
}

/// Polls `cond` until it holds, failing after `WAIT`.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The text of the first message in a `Messages` event, with its id.
fn incoming_text(event: &Event) -> Option<(String, String, Jid)> {
    let Event::Messages(batch) = event else {
        return None;
    };
    batch.iter().find_map(|m| {
        let text = m.message.conversation.clone()?;
        Some((m.info.id.to_string(), text, m.info.source.sender.clone()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_text_reaches_the_contact_once_and_the_send_is_acked() {
    let mock = start().await;
    let (mut client, _jid) = paired_client(&mock).await;

    let first = client
        .client
        .send_text(Jid::pn(CONTACT), "hello contact")
        .await
        .expect("send completes");
    // Either may come first: waiting for one must not swallow the other.
    let (mut acked, mut receipt) = (None, None);
    client
        .wait_event(WAIT, "ServerAck and delivery Receipt", |e| {
            match e {
                Event::ServerAck(a) if a.id == first.message_id => acked = Some(a.clone()),
                Event::Receipt(r) if r.message_ids.contains(&first.message_id) => {
                    receipt = Some(r.clone())
                }
                _ => {}
            }
            (acked.is_some() && receipt.is_some()).then_some(())
        })
        .await;
    let (acked, receipt) = (acked.unwrap(), receipt.unwrap());
    assert_eq!(acked.class.as_deref(), Some("message"));
    assert_eq!(acked.error, None);

    let inbox = mock.inbox(CONTACT).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0].id, first.message_id);
    assert_eq!(inbox[0].text, "hello contact");
    assert_eq!(receipt.r#type, ReceiptType::Delivered);
    assert_eq!(receipt.source.sender.user, CONTACT);

    let second = client
        .client
        .send_text(Jid::pn(CONTACT), "and again")
        .await
        .expect("second send completes");
    client
        .wait_event(WAIT, "second ServerAck", |e| match e {
            Event::ServerAck(a) if a.id == second.message_id => Some(()),
            _ => None,
        })
        .await;
    let texts: Vec<String> = mock
        .inbox(CONTACT)
        .await
        .into_iter()
        .map(|e| e.text)
        .collect();
    assert_eq!(texts, ["hello contact", "and again"]);
    let stats = mock.messaging().expect("messaging").stats();
    assert_eq!(stats.messages_received, 2, "{stats:?}");
    assert_eq!(stats.decrypt_failures, 0, "{stats:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_text_reaches_the_client_and_read_receipts_arrive() {
    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;

    let id = mock
        .deliver(CONTACT, &jid, "hi from a contact", None)
        .await
        .expect("deliver");
    let (got_id, text, sender) = client.wait_event(WAIT, "Messages", incoming_text).await;
    assert_eq!(got_id, id);
    assert_eq!(text, "hi from a contact");
    // LID-addressed, as the real server sends one-to-one messages.
    assert_eq!(sender.user, mock.lid_of(CONTACT));
    let messaging = mock.messaging().expect("messaging").clone();
    eventually("the client to ack the message", || {
        let m = messaging.clone();
        let jid = jid.clone();
        async move { m.pending(&jid).await == 0 }
    })
    .await;

    let sent = client
        .client
        .send_text(Jid::pn(CONTACT), "reply")
        .await
        .expect("send");
    mock.receipt(CONTACT, &jid, &sent.message_id, ReceiptKind::Read)
        .await
        .expect("read receipt");
    client
        .wait_event(WAIT, "read Receipt", |e| match e {
            Event::Receipt(r)
                if r.r#type == ReceiptType::Read && r.message_ids.contains(&sent.message_id) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_an_offline_device_arrives_after_it_connects_once() {
    let mock = start().await;
    let (client, jid) = paired_client(&mock).await;
    let backend = client.shutdown().await;
    mock.wait_for(Duration::from_secs(10), |s| s.connections_open == 0)
        .await
        .expect("client disconnects");

    // What the first session left unacked when it shut down (a receipt,
    // a notification) waits too; the message adds one.
    let messaging = mock.messaging().expect("messaging").clone();
    let left = messaging.pending(&jid).await;
    let id = mock
        .deliver(CONTACT, &jid, "sent while you were away", None)
        .await
        .expect("deliver to an offline device");
    assert_eq!(messaging.pending(&jid).await, left + 1);

    let mut again = TestClient::start(&mock.ws_url(), Some(backend)).await;
    let (got_id, text, _) = again.wait_event(WAIT, "Messages", incoming_text).await;
    assert_eq!(
        (got_id.as_str(), text.as_str()),
        (id.as_str(), "sent while you were away")
    );
    eventually("the client to ack the offline message", || {
        let m = messaging.clone();
        let jid = jid.clone();
        async move { m.pending(&jid).await == 0 }
    })
    .await;
    let backend = again.shutdown().await;
    mock.wait_for(Duration::from_secs(10), |s| s.connections_open == 0)
        .await
        .expect("client disconnects");

    // Acked means gone: the next login brings no second copy.
    let mut third = TestClient::start(&mock.ws_url(), Some(backend)).await;
    let repeats = third
        .wait_event(WAIT, "OfflineSyncCompleted", |e| match e {
            Event::OfflineSyncCompleted(done) => Some(done.count),
            _ => None,
        })
        .await;
    assert_eq!(repeats, 0);
    third.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_writes_to_another_through_the_mock() {
    init_logging();
    // Without the simulated phone's own receipts, only the one Bob's client
    // sends can reach Alice.
    let mock = MockServer::start_with_messaging(
        MockConfig::default(),
        MessagingConfig {
            auto_delivery_receipts: false,
        },
    )
    .await
    .expect("mock starts");
    let (mut alice, _alice_jid) = paired_client(&mock).await;
    let (mut bob, bob_jid) = paired_client(&mock).await;
    let bob_phone = bob_jid.split(':').next().expect("phone").to_string();

    let sent = alice
        .client
        .send_text(Jid::pn(bob_phone.as_str()), "hello bob")
        .await
        .expect("send");
    let (got_id, text, sender) = bob.wait_event(WAIT, "Messages", incoming_text).await;
    assert_eq!(
        (got_id.as_str(), text.as_str()),
        (sent.message_id.as_str(), "hello bob")
    );
    assert_eq!(sender.user, "15550000001");
    // Bob's simulated phone got its copy too.
    let phone_inbox = mock.inbox(&bob_phone).await;
    assert_eq!(phone_inbox.len(), 1, "{phone_inbox:?}");
    // Bob's client acknowledges with a delivery receipt, relayed to Alice.
    let receipt = alice
        .wait_event(WAIT, "delivery Receipt from bob", |e| match e {
            Event::Receipt(r)
                if r.message_ids.contains(&sent.message_id)
                    && r.source.sender.user == bob_phone =>
            {
                Some(r.r#type.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(receipt, ReceiptType::Delivered);
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_delivers_lists_the_inbox_and_sends_receipts() {
    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;

    let (status, body) = admin_http(
        &mock,
        "POST",
        "/admin/deliver",
        Some(serde_json::json!({"from": CONTACT, "to": jid, "text": "via http", "id": "HTTP1"})),
    )
    .await;
    assert_eq!((status, body), (200, serde_json::json!({"id": "HTTP1"})));
    let (got_id, text, _) = client.wait_event(WAIT, "Messages", incoming_text).await;
    assert_eq!((got_id.as_str(), text.as_str()), ("HTTP1", "via http"));

    let sent = client
        .client
        .send_text(Jid::pn(CONTACT), "answer")
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
        &format!("/admin/inbox?contact=%2B{CONTACT}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(inbox.as_array().map(Vec::len), Some(1), "{inbox}");
    assert_eq!(inbox[0]["id"], sent.message_id.as_str());
    assert_eq!(inbox[0]["text"], "answer");

    let (status, _) = admin_http(
        &mock,
        "POST",
        "/admin/receipt",
        Some(
            serde_json::json!({"from": CONTACT, "to": jid, "id": sent.message_id, "kind": "read"}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    client
        .wait_event(WAIT, "read Receipt", |e| match e {
            Event::Receipt(r)
                if r.r#type == ReceiptType::Read && r.message_ids.contains(&sent.message_id) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;

    let (status, stats) = admin_http(&mock, "GET", "/admin/messaging/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["messages_received"], 1, "{stats}");
    let (status, core_stats) = admin_http(&mock, "GET", "/admin/stats", None).await;
    assert_eq!(status, 200);
    assert!(
        core_stats["messages_acked"].as_u64() >= Some(1),
        "{core_stats}"
    );
    assert!(
        core_stats["receipts_sent"].as_u64() >= Some(2),
        "{core_stats}"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_that_lost_its_session_gets_the_message_through_a_retry() {
    let mock = start().await;
    let (mut client, _jid) = paired_client(&mock).await;
    let messaging = mock.messaging().expect("messaging").clone();

    let first = client
        .client
        .send_text(Jid::pn(CONTACT), "before")
        .await
        .expect("send");
    client
        .wait_event(WAIT, "ServerAck", |e| match e {
            Event::ServerAck(a) if a.id == first.message_id => Some(()),
            _ => None,
        })
        .await;
    messaging.forget_sessions(CONTACT).await;

    let second = client
        .client
        .send_text(Jid::pn(CONTACT), "after the contact lost its session")
        .await
        .expect("send");
    eventually("the retried message in the contact's inbox", || {
        let m = messaging.clone();
        async move { m.inbox(CONTACT).await.len() == 2 }
    })
    .await;
    let inbox = mock.inbox(CONTACT).await;
    assert_eq!(inbox[1].id, second.message_id);
    assert_eq!(inbox[1].text, "after the contact lost its session");
    let stats = messaging.stats();
    assert_eq!(stats.decrypt_failures, 1, "{stats:?}");
    assert_eq!(stats.messages_received, 2, "{stats:?}");
    client.shutdown().await;
}

/// A second device of the same account, paired with `scan_for`.
async fn second_device(mock: &MockHandle, phone: &str) -> (TestClient, String) {
    let mut c = TestClient::start(&mock.ws_url(), None).await;
    let qr = c
        .wait_event(WAIT, "PairingQrCode", |e| match e {
            Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await;
    let jid = mock.scan_for(&qr, phone).await.expect("scan pairs");
    c.wait_connected(Duration::from_secs(60)).await;
    (c, jid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_an_account_gets_contact_messages_and_its_own_sent_ones() {
    let mock = start().await;
    let (mut first, first_jid) = paired_client(&mock).await;
    let phone = first_jid.split(':').next().expect("phone").to_string();
    let (mut second, second_jid) = second_device(&mock, &phone).await;
    assert_ne!(first_jid, second_jid);

    let id = mock
        .deliver(CONTACT, &phone, "to both devices", None)
        .await
        .expect("deliver");
    for client in [&mut first, &mut second] {
        let (got_id, text, _) = client.wait_event(WAIT, "Messages", incoming_text).await;
        assert_eq!(
            (got_id.as_str(), text.as_str()),
            (id.as_str(), "to both devices")
        );
    }

    // What one device sends shows up on the other as sent by the account.
    // The second device sends: it learned the account's device list after
    // both were paired (the core sends no device-change notifications).
    let sent = second
        .client
        .send_text(Jid::pn(CONTACT), "from the second device")
        .await
        .expect("send");
    let synced = first
        .wait_event(WAIT, "own sent message", |e| match e {
            Event::Messages(batch) => batch.iter().find_map(|m| {
                (m.info.id == sent.message_id).then(|| {
                    let inner = m
                        .message
                        .device_sent_message
                        .as_option()
                        .and_then(|d| d.message.as_option())
                        .and_then(|msg| msg.conversation.clone())
                        .or_else(|| m.message.conversation.clone());
                    (m.info.source.is_from_me, inner)
                })
            }),
            _ => None,
        })
        .await;
    assert_eq!(synced, (true, Some("from the second device".to_string())));
    first.shutdown().await;
    second.shutdown().await;
}
