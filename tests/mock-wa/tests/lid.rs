//! LID addressing with whatsapp-rust's own client, unmodified: every
//! number has a LID the server hands out, contacts write LID-addressed (or
//! by number when asked), and what the client sends to either address of a
//! contact is recorded once, under the contact.

mod common;

use common::{init_logging, paired_client};
use mock_wa::messaging::Addressing;
use mock_wa::{MockConfig, MockHandle, MockServer};
use std::time::Duration;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore_binary::Jid;

const CONTACT: &str = "15557654321";
const WAIT: Duration = Duration::from_secs(30);

async fn start() -> MockHandle {
    init_logging();
    MockServer::start(MockConfig::default())
        .await
        .expect("mock starts")
}

/// (id, text, sender, sender_alt, addressing_mode) of a text in a `Messages` event.
type Incoming = (String, String, Jid, Option<Jid>, Option<String>);

fn incoming(event: &Event) -> Option<Incoming> {
    let Event::Messages(batch) = event else {
        return None;
    };
    batch.iter().find_map(|m| {
        let text = m.message.conversation.clone()?;
        let source = &m.info.source;
        Some((
            m.info.id.to_string(),
            text,
            source.sender.clone(),
            source.sender_alt.clone(),
            source
                .addressing_mode
                .map(|a| format!("{a:?}").to_lowercase()),
        ))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_writes_lid_addressed_by_default_and_by_number_when_asked() {
    let mock = start().await;
    let (mut client, jid) = paired_client(&mock).await;
    let lid = mock.lid_of(CONTACT);
    assert_ne!(lid, CONTACT, "a LID is not the phone number");

    let id = mock
        .deliver(CONTACT, &jid, "by lid", None)
        .await
        .expect("deliver");
    let (got, text, sender, alt, mode) = client.wait_event(WAIT, "Messages", incoming).await;
    assert_eq!((got.as_str(), text.as_str()), (id.as_str(), "by lid"));
    assert_eq!(sender, Jid::lid(lid.as_str()));
    assert_eq!(alt, Some(Jid::pn(CONTACT)), "sender_pn carries the number");
    assert_eq!(mode.as_deref(), Some("lid"));

    let id = mock
        .deliver_as(CONTACT, &jid, "by number", None, Addressing::Pn)
        .await
        .expect("deliver");
    let (got, text, sender, alt, _) = client.wait_event(WAIT, "Messages", incoming).await;
    assert_eq!((got.as_str(), text.as_str()), (id.as_str(), "by number"));
    assert_eq!(sender, Jid::pn(CONTACT));
    assert_eq!(
        alt,
        Some(Jid::lid(lid.as_str())),
        "sender_lid carries the LID"
    );

    let stats = mock.messaging().expect("messaging").stats();
    assert_eq!(stats.decrypt_failures, 0, "{stats:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_to_either_address_of_a_contact_are_recorded_once_under_the_contact() {
    let mock = start().await;
    let (mut client, _jid) = paired_client(&mock).await;
    let lid = Jid::lid(mock.lid_of(CONTACT).as_str());

    for (to, text) in [
        (lid.clone(), "to the lid"),
        (Jid::pn(CONTACT), "to the number"),
    ] {
        let sent = client
            .client
            .send_text(to.clone(), text)
            .await
            .expect("send completes");
        // Either may come first: waiting for one must not swallow the other.
        let (mut ack, mut receipt) = (None, None);
        client
            .wait_event(WAIT, "ServerAck and delivery Receipt", |e| {
                match e {
                    Event::ServerAck(a) if a.id == sent.message_id => ack = Some(a.clone()),
                    Event::Receipt(r) if r.message_ids.contains(&sent.message_id) => {
                        receipt = Some(r.clone())
                    }
                    _ => {}
                }
                (ack.is_some() && receipt.is_some()).then_some(())
            })
            .await;
        let (ack, receipt) = (ack.unwrap(), receipt.unwrap());
        assert_eq!(ack.error, None, "{ack:?}");
        assert_eq!(
            receipt.source.sender.to_non_ad(),
            to,
            "the receipt comes from the address the message went to"
        );
    }

    let inbox = mock.inbox(CONTACT).await;
    let got: Vec<(&str, Addressing, &str)> = inbox
        .iter()
        .map(|e| (e.text.as_str(), e.addressing, e.to.as_str()))
        .collect();
    let lid_text = lid.to_string();
    let pn_text = Jid::pn(CONTACT).to_string();
    assert_eq!(
        got,
        [
            ("to the lid", Addressing::Lid, lid_text.as_str()),
            ("to the number", Addressing::Pn, pn_text.as_str()),
        ]
    );
    let stats = mock.messaging().expect("messaging").stats();
    assert_eq!(stats.messages_received, 2, "{stats:?}");
    assert_eq!(stats.decrypt_failures, 0, "{stats:?}");
    client.shutdown().await;
}
