//! The messaging side against a fake core, with requests built and answers
//! parsed by wacore's own client-side IQ specs.

use std::sync::Mutex;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wacore::iq::prekeys::{PreKeyCountSpec, PreKeyFetchSpec, PreKeyUploadSpec};
use wacore::iq::spec::IqSpec;
use wacore::iq::usync::DeviceListSpec;
use wacore::request::InfoQuery;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use wacore_libsignal::protocol::{IdentityKeyPair, KeyPair};

use super::addressing::Addressing;
use super::directory::{AccountDevices, CompanionDevice, ServerView};
use super::hub::{Messaging, MessagingConfig, ReceiptKind};
use super::stanza::attr;

const ACCOUNT: &str = "15550000001";
const CONTACT: &str = "15557654321";

/// A core with one account (one companion, device 1) whose connection is
/// up or down at the test's command; records what was pushed.
#[derive(Default)]
struct FakeCore {
    online: Mutex<bool>,
    pushed: Mutex<Vec<Node>>,
}

impl FakeCore {
    fn set_online(&self, online: bool) {
        *self.online.lock().expect("lock") = online;
    }

    fn take_pushed(&self) -> Vec<Node> {
        std::mem::take(&mut *self.pushed.lock().expect("lock"))
    }
}

impl ServerView for FakeCore {
    fn account(&self, phone: &str) -> Option<AccountDevices> {
        (phone == ACCOUNT).then(|| AccountDevices {
            raw_id: 7,
            companions: vec![CompanionDevice {
                device: 1,
                key_index: 1,
            }],
        })
    }

    fn phone_of_lid(&self, lid_user: &str) -> Option<String> {
        [ACCOUNT, CONTACT]
            .into_iter()
            .find(|p| crate::state::lid_user_for(p) == lid_user)
            .map(str::to_string)
    }

    fn lid_of(&self, phone: &str) -> String {
        crate::state::lid_user_for(phone)
    }

    fn push(&self, _device: &Jid, node: Node) -> bool {
        if !*self.online.lock().expect("lock") {
            return false;
        }
        self.pushed.lock().expect("lock").push(node);
        true
    }
}

fn device() -> Jid {
    Jid::pn_device(ACCOUNT, 1)
}

fn iq_node(iq: InfoQuery<'_>, id: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("id", id)
        .attr("xmlns", iq.namespace)
        .attr("type", iq.query_type.as_str())
        .attr("to", iq.to)
        .apply_content(iq.content)
        .build()
}

/// Uploads keys for the account's device as whatsapp-rust would.
async fn upload_keys(messaging: &Messaging, core: &FakeCore, prekeys: u32) {
    let mut rng = StdRng::seed_from_u64(1);
    let identity = IdentityKeyPair::generate(&mut rng);
    let signed = KeyPair::generate(&mut rng);
    let signature = identity
        .private_key()
        .calculate_signature(&signed.public_key.serialize(), &mut rng)
        .expect("sign");
    let spec = PreKeyUploadSpec::new(
        4242,
        *identity.public_key(),
        3,
        signed.public_key,
        signature.to_vec(),
        (1..=prekeys)
            .map(|id| (id, KeyPair::generate(&mut rng).public_key))
            .collect(),
    );
    let reply = messaging
        .handle_iq(core, &device(), &iq_node(spec.build_iq(), "up"))
        .await
        .expect("encrypt IQ answered");
    assert_eq!(attr(&reply, "type").as_deref(), Some("result"));
}

async fn prekey_count(messaging: &Messaging, core: &FakeCore) -> usize {
    let spec = PreKeyCountSpec::new();
    let reply = messaging
        .handle_iq(core, &device(), &iq_node(spec.build_iq(), "count"))
        .await
        .expect("answered");
    spec.parse_response(&reply.as_node_ref())
        .expect("count parses")
        .count
}

#[tokio::test]
async fn a_fetch_hands_out_one_uploaded_prekey_and_the_count_drops() {
    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    assert_eq!(prekey_count(&messaging, &core).await, 0);
    upload_keys(&messaging, &core, 3).await;
    assert_eq!(prekey_count(&messaging, &core).await, 3);

    let contact = Jid::pn(CONTACT);
    let spec = PreKeyFetchSpec::new(vec![device(), contact.clone()]);
    let reply = messaging
        .handle_iq(&core, &device(), &iq_node(spec.build_iq(), "fetch"))
        .await
        .expect("answered");
    let outcome = spec
        .parse_response(&reply.as_node_ref())
        .expect("bundles parse");
    assert_eq!(outcome.bundles.len(), 2, "{:?}", outcome.rejected);
    let own = &outcome.bundles[&device()];
    assert_eq!(own.registration_id().expect("reg"), 4242);
    assert!(own.pre_key_id().expect("prekey").is_some());
    assert!(
        outcome.bundles[&contact]
            .pre_key_id()
            .expect("prekey")
            .is_some()
    );
    assert_eq!(prekey_count(&messaging, &core).await, 2);
}

#[tokio::test]
async fn device_lists_carry_companions_with_a_key_index_clients_accept() {
    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    let spec = DeviceListSpec::new(vec![Jid::pn(ACCOUNT), Jid::pn(CONTACT)], "sid");
    let reply = messaging
        .handle_iq(&core, &device(), &iq_node(spec.build_iq(), "usync"))
        .await
        .expect("answered");
    let lists = spec
        .parse_response(&reply.as_node_ref())
        .expect("usync parses")
        .device_lists;
    let devices_of = |user: &str| -> Vec<u16> {
        lists
            .iter()
            .find(|l| l.user.user == user)
            .map(|l| l.devices.iter().map(|d| d.device).collect())
            .unwrap_or_default()
    };
    assert_eq!(devices_of(ACCOUNT), [0, 1]);
    assert_eq!(devices_of(CONTACT), [0]);
    let account = lists
        .iter()
        .find(|l| l.user.user == ACCOUNT)
        .expect("account");
    let decoded = wacore::adv::decode_key_index_list(
        account.key_index_bytes.as_deref().expect("key index list"),
    )
    .expect("decodes");
    assert_eq!(decoded.raw_id, 7);
    assert_eq!(decoded.valid_indexes, [1]);
}

#[tokio::test]
async fn unacked_messages_come_again_at_every_login_until_acked() {
    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    upload_keys(&messaging, &core, 2).await;
    let id = messaging
        .deliver(
            &core,
            CONTACT,
            ACCOUNT,
            "while offline",
            Some("M1".into()),
            Addressing::Pn,
        )
        .await
        .expect("deliver");
    assert_eq!(id, "M1");
    assert!(
        core.take_pushed().is_empty(),
        "nothing reaches an offline device"
    );

    // The first login also carries the phone's app-state key share.
    let first = messaging.backlog(&core, &device()).await;
    assert_eq!(first.len(), 2);
    let (shares, texts): (Vec<&Node>, Vec<&Node>) = first
        .iter()
        .partition(|n| attr(n, "category").as_deref() == Some("peer"));
    assert_eq!(shares.len(), 1);
    assert_eq!(
        attr(shares[0], "from").as_deref(),
        Some("15550000001@s.whatsapp.net")
    );
    let share_id = attr(shares[0], "id").expect("id");
    assert_eq!(attr(texts[0], "id").as_deref(), Some("M1"));
    assert_eq!(attr(texts[0], "offline").as_deref(), Some("1"));
    let enc = texts[0].get_optional_child("enc").expect("enc");
    assert_eq!(attr(enc, "type").as_deref(), Some("pkmsg"));

    let again = messaging.backlog(&core, &device()).await;
    assert_eq!(again, first, "an unacked message is resent byte for byte");

    for id in [share_id.as_str(), "M1"] {
        let ack = NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id)
            .attr("type", "text")
            .build();
        messaging.handle_ack(&core, &device(), &ack).await;
    }
    assert!(
        messaging.backlog(&core, &device()).await.is_empty(),
        "nothing comes again, and the key share is not shared twice"
    );
    assert_eq!(messaging.stats().client_acks, 2);
}

#[tokio::test]
async fn live_messages_go_out_at_once_and_a_receipt_settles_them() {
    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    upload_keys(&messaging, &core, 2).await;
    core.set_online(true);
    messaging
        .deliver(
            &core,
            CONTACT,
            ACCOUNT,
            "one",
            Some("A".into()),
            Addressing::Pn,
        )
        .await
        .expect("deliver");
    messaging
        .deliver(
            &core,
            CONTACT,
            ACCOUNT,
            "two",
            Some("B".into()),
            Addressing::Pn,
        )
        .await
        .expect("deliver");
    let pushed = core.take_pushed();
    assert_eq!(pushed.len(), 2);
    assert_eq!(
        attr(&pushed[0], "from").as_deref(),
        Some("15557654321@s.whatsapp.net")
    );
    assert_eq!(attr(&pushed[1], "offline"), None);
    assert_eq!(messaging.pending("15550000001:1@s.whatsapp.net").await, 2);

    // An aggregated receipt names the second message in its list.
    let receipt = NodeBuilder::new("receipt")
        .attr("id", "A")
        .attr("to", Jid::pn(CONTACT))
        .children([NodeBuilder::new("list")
            .children([NodeBuilder::new("item").attr("id", "B").build()])
            .build()])
        .build();
    let replies = messaging.handle_receipt(&core, &device(), &receipt).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(attr(&replies[0], "class").as_deref(), Some("receipt"));
    assert_eq!(messaging.pending("15550000001:1@s.whatsapp.net").await, 0);
}

#[tokio::test]
async fn receipt_acks_are_matched_by_receipt_type() {
    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    for kind in [ReceiptKind::Delivery, ReceiptKind::Read] {
        messaging
            .receipt(&core, CONTACT, ACCOUNT, "X", kind, None)
            .await
            .expect("receipt");
    }
    let backlog = messaging.backlog(&core, &device()).await;
    let types: Vec<Option<String>> = backlog.iter().map(|n| attr(n, "type")).collect();
    assert_eq!(types, [None, Some("read".to_string())]);

    let read_ack = NodeBuilder::new("ack")
        .attr("class", "receipt")
        .attr("id", "X")
        .attr("type", "read")
        .build();
    messaging.handle_ack(&core, &device(), &read_ack).await;
    let left = messaging.backlog(&core, &device()).await;
    assert_eq!(left.len(), 1);
    assert_eq!(attr(&left[0], "type"), None);
    assert_eq!(messaging.stats().receipts_sent, 2);
}

#[tokio::test]
async fn delivery_needs_a_known_device_and_a_text() {
    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    assert!(matches!(
        messaging
            .deliver(&core, CONTACT, "15559999999", "x", None, Addressing::Pn)
            .await,
        Err(super::MessagingError::NoDevices(_))
    ));
    assert!(matches!(
        messaging
            .deliver(&core, CONTACT, ACCOUNT, "", None, Addressing::Pn)
            .await,
        Err(super::MessagingError::EmptyText)
    ));
    assert!(matches!(
        messaging
            .deliver(&core, "bob", ACCOUNT, "x", None, Addressing::Pn)
            .await,
        Err(super::MessagingError::BadAddress(_))
    ));
}

#[tokio::test]
async fn admin_routes_answer_json() {
    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    let no_query: Vec<(String, String)> = Vec::new();
    let reply = messaging
        .admin(&core, "GET", "/admin/inbox", &no_query, b"")
        .await
        .expect("routed");
    assert_eq!(reply.status, 400);

    let query = vec![("contact".to_string(), CONTACT.to_string())];
    let reply = messaging
        .admin(&core, "GET", "/admin/inbox", &query, b"")
        .await
        .expect("routed");
    assert_eq!(
        (reply.status, reply.body.clone()),
        (200, serde_json::json!([]))
    );

    let body = serde_json::json!({"from": CONTACT, "to": format!("{ACCOUNT}@s.whatsapp.net"), "text": "hi", "id": "ID1"});
    let reply = messaging
        .admin(
            &core,
            "POST",
            "/admin/deliver",
            &no_query,
            body.to_string().as_bytes(),
        )
        .await
        .expect("routed");
    assert_eq!(
        (reply.status, reply.body),
        (200, serde_json::json!({"id": "ID1"}))
    );

    let body = serde_json::json!({"from": CONTACT, "to": ACCOUNT, "id": "ID1", "kind": "seen"});
    let reply = messaging
        .admin(
            &core,
            "POST",
            "/admin/receipt",
            &no_query,
            body.to_string().as_bytes(),
        )
        .await
        .expect("routed");
    assert_eq!(reply.status, 400);
    assert!(reply.body["error"].as_str().unwrap_or("").contains("read"));

    let other = messaging
        .admin(&core, "GET", "/admin/devices", &no_query, b"")
        .await;
    assert!(other.is_none(), "other routes stay the core's");
}

/// A device that lost its keys asks for a retry with fresh ones; the
/// contact's resend must decrypt with exactly those keys.
#[tokio::test]
async fn a_retry_receipt_with_fresh_keys_gets_a_message_the_device_can_decrypt() {
    use super::signal_store::SignalStore;
    use wacore_libsignal::protocol::{
        GenericSignedPreKey, PreKeyId, PreKeyRecord, PreKeySignalMessage, SignedPreKeyId,
        SignedPreKeyRecord, Timestamp, UsePQRatchet, message_decrypt_prekey,
    };

    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    upload_keys(&messaging, &core, 2).await;
    core.set_online(true);
    messaging
        .deliver(
            &core,
            CONTACT,
            ACCOUNT,
            "please decrypt me",
            Some("R1".into()),
            Addressing::Pn,
        )
        .await
        .expect("deliver");
    assert_eq!(core.take_pushed().len(), 1);

    // The device starts over with new keys it has the private halves of.
    let mut rng = StdRng::seed_from_u64(99);
    let identity = IdentityKeyPair::generate(&mut rng);
    let mut client = SignalStore::new(identity.clone(), 555);
    let signed = KeyPair::generate(&mut rng);
    let signature = identity
        .private_key()
        .calculate_signature(&signed.public_key.serialize(), &mut rng)
        .expect("sign");
    client.signed_prekeys.insert(
        8,
        SignedPreKeyRecord::new(
            SignedPreKeyId::from(8),
            Timestamp::from_epoch_millis(0),
            &signed,
            &signature,
        ),
    );
    let one = KeyPair::generate(&mut rng);
    client
        .prekeys
        .insert(77, PreKeyRecord::new(PreKeyId::from(77), &one));
    let keys = wacore::protocol::retry::build_retry_keys_node(
        identity.public_key(),
        77,
        &one.public_key,
        8,
        &signed.public_key,
        signature.to_vec(),
        vec![1, 2, 3],
    );
    let retry = NodeBuilder::new("receipt")
        .attr("to", Jid::pn(CONTACT))
        .attr("id", "R1")
        .attr("type", "retry")
        .children([
            NodeBuilder::new("retry")
                .attr("v", "1")
                .attr("id", "R1")
                .attr("count", "1")
                .build(),
            NodeBuilder::new("registration")
                .bytes(555u32.to_be_bytes().to_vec())
                .build(),
            keys,
        ])
        .build();
    messaging.handle_receipt(&core, &device(), &retry).await;
    assert_eq!(
        messaging.pending("15550000001:1@s.whatsapp.net").await,
        1,
        "a retry does not settle the message"
    );

    let resent = core.take_pushed();
    assert_eq!(resent.len(), 1);
    assert_eq!(attr(&resent[0], "id").as_deref(), Some("R1"));
    let enc = resent[0].get_optional_child("enc").expect("enc");
    let Some(wacore_binary::NodeContent::Bytes(bytes)) = &enc.content else {
        panic!("enc has bytes");
    };
    let message = PreKeySignalMessage::try_from(bytes.as_slice()).expect("pkmsg");
    assert_eq!(message.pre_key_id().map(u32::from), Some(77));
    let contact_addr = super::sim_device::address_of(CONTACT, "s.whatsapp.net", 0);
    let plain = message_decrypt_prekey(
        &message,
        &contact_addr,
        &mut client.sessions,
        &mut client.identities,
        &mut client.prekeys,
        &client.signed_prekeys,
        &mut rng,
        UsePQRatchet::No,
    )
    .await
    .expect("the device decrypts the resend");
    let decoded = wacore::messages::decode_plaintext(&plain.plaintext, 2).expect("message");
    assert_eq!(decoded.conversation.as_deref(), Some("please decrypt me"));
}

#[tokio::test]
async fn a_message_waiting_for_keys_goes_out_once_the_device_uploads_them() {
    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    core.set_online(true);
    messaging
        .deliver(
            &core,
            CONTACT,
            ACCOUNT,
            "early",
            Some("E".into()),
            Addressing::Pn,
        )
        .await
        .expect("deliver to a known device without keys");
    assert!(core.take_pushed().is_empty(), "nothing to encrypt with yet");
    upload_keys(&messaging, &core, 1).await;
    let pushed = core.take_pushed();
    assert_eq!(pushed.len(), 1);
    assert_eq!(attr(&pushed[0], "id").as_deref(), Some("E"));
}

/// A contact that cannot decrypt asks for a retry with a fresh bundle; the
/// client's new session from that bundle gets the message through once.
#[tokio::test]
async fn an_undecryptable_message_gets_a_retry_receipt_whose_keys_work() {
    use super::bundle::{Bundle, child_bytes, id_from_bytes, key_32};
    use super::signal_store::SignalStore;
    use wacore_libsignal::protocol::{UsePQRatchet, message_encrypt, process_prekey_bundle};

    let (messaging, core) = (
        Messaging::new(MessagingConfig::default()),
        FakeCore::default(),
    );
    let message_with = |enc_type: &str, bytes: Vec<u8>| {
        NodeBuilder::new("message")
            .attr("to", Jid::pn(CONTACT))
            .attr("id", "BROKEN")
            .attr("type", "text")
            .children([NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", enc_type.to_string())
                .bytes(bytes)
                .build()])
            .build()
    };

    let replies = messaging
        .handle_message(&core, &device(), &message_with("msg", vec![3; 60]))
        .await;
    assert_eq!(replies.len(), 2, "ack and retry receipt");
    assert_eq!(attr(&replies[0], "class").as_deref(), Some("message"));
    let retry = &replies[1];
    assert_eq!(attr(retry, "type").as_deref(), Some("retry"));
    assert!(messaging.inbox(CONTACT).await.is_empty());

    let keys = retry.get_optional_child("keys").expect("keys");
    let skey = keys.get_optional_child("skey").expect("skey");
    let key = keys.get_optional_child("key").expect("key");
    let bundle = Bundle {
        registration_id: id_from_bytes(child_bytes(retry, "registration").expect("reg"))
            .expect("reg id"),
        identity: key_32(child_bytes(keys, "identity").expect("identity")).expect("32"),
        signed_id: id_from_bytes(child_bytes(skey, "id").expect("id")).expect("id"),
        signed_public: key_32(child_bytes(skey, "value").expect("value")).expect("32"),
        signed_signature: child_bytes(skey, "signature").expect("sig").to_vec(),
        prekey: Some((
            id_from_bytes(child_bytes(key, "id").expect("id")).expect("id"),
            key_32(child_bytes(key, "value").expect("value")).expect("32"),
        )),
    };

    let mut rng = StdRng::seed_from_u64(5);
    let mut client = SignalStore::new(IdentityKeyPair::generate(&mut rng), 4242);
    let contact_addr = super::sim_device::address_of(CONTACT, "s.whatsapp.net", 0);
    process_prekey_bundle(
        &contact_addr,
        &mut client.sessions,
        &mut client.identities,
        &bundle.to_libsignal(0).expect("bundle"),
        &mut rng,
        UsePQRatchet::No,
    )
    .await
    .expect("session from the retry keys");
    let padded = wacore::messages::MessageUtils::encode_and_pad(&waproto::whatsapp::Message {
        conversation: Some("second try".into()),
        ..Default::default()
    });
    let ciphertext = message_encrypt(
        &padded,
        &contact_addr,
        &mut client.sessions,
        &mut client.identities,
    )
    .await
    .expect("encrypt");
    let replies = messaging
        .handle_message(
            &core,
            &device(),
            &message_with("pkmsg", ciphertext.serialize().to_vec()),
        )
        .await;
    assert_eq!(attr(&replies[1], "type"), None, "now a delivery receipt");
    let inbox = messaging.inbox(CONTACT).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        (inbox[0].id.as_str(), inbox[0].text.as_str()),
        ("BROKEN", "second try")
    );
}
