//! Protocol edge cases driven by a hand-rolled client built from the
//! wacore-noise initiator state machine: header variants, pings, unknown IQs
//! and clients that send garbage.

use buffa::Message as _;
use futures_util::{SinkExt as _, StreamExt as _};
use mock_wa::{MockConfig, MockServer};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_libsignal::protocol::KeyPair;
use wacore_noise::{NoiseCipher, XxHandshakeState};
use waproto::whatsapp as wa;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const STEP: Duration = Duration::from_secs(10);

struct Raw {
    ws: Ws,
    buf: Vec<u8>,
    write: NoiseCipher,
    read: NoiseCipher,
    wc: u32,
    rc: u32,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut out = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8];
    out.extend_from_slice(payload);
    out
}

fn registration_payload() -> Vec<u8> {
    let identity = KeyPair::generate(&mut rand::rng());
    let skey = KeyPair::generate(&mut rand::rng());
    wa::ClientPayload {
        device_pairing_data: buffa::MessageField::some(
            wa::client_payload::DevicePairingRegistrationData {
                e_regid: Some(1234u32.to_be_bytes().to_vec()),
                e_keytype: Some(vec![5]),
                e_ident: Some(identity.public_key.public_key_bytes().to_vec()),
                e_skey_id: Some(vec![0, 0, 1]),
                e_skey_val: Some(skey.public_key.public_key_bytes().to_vec()),
                e_skey_sig: Some(vec![0; 64]),
                build_hash: Some(vec![0; 16]),
                device_props: Some(Vec::new()),
            },
        ),
        ..Default::default()
    }
    .encode_to_vec()
}

async fn read_frame(ws: &mut Ws, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if buf.len() >= 3 {
            let n = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() >= 3 + n {
                let f = buf[3..3 + n].to_vec();
                buf.drain(..3 + n);
                return Some(f);
            }
        }
        match tokio::time::timeout(STEP, ws.next()).await.ok()? {
            Some(Ok(Message::Binary(b))) => buf.extend_from_slice(&b),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

impl Raw {
    /// Connects and completes XX as a new (registering) device. `intro`
    /// (edge routing) goes before the `prologue` header, then the first frame.
    async fn connect(url: &str, intro: &[u8], prologue: &[u8]) -> Self {
        let noise = KeyPair::generate(&mut rand::rng());
        Self::connect_as(url, intro, prologue, noise, registration_payload()).await
    }

    /// Completes XX with Noise key `noise` and ClientPayload `payload`.
    async fn connect_as(
        url: &str,
        intro: &[u8],
        prologue: &[u8],
        noise: KeyPair,
        payload: Vec<u8>,
    ) -> Self {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connects");
        let mut hs =
            XxHandshakeState::new(noise, payload, prologue).expect("client handshake state");
        let mut first = [intro, prologue].concat();
        first.extend_from_slice(&frame(&hs.build_client_hello().expect("hello")));
        ws.send(Message::Binary(first.into()))
            .await
            .expect("send hello");
        let mut buf = Vec::new();
        let server_hello = read_frame(&mut ws, &mut buf).await.expect("server hello");
        let finish = hs
            .read_server_hello_and_build_client_finish(&server_hello)
            .expect("server hello verifies");
        ws.send(Message::Binary(frame(&finish).into()))
            .await
            .expect("send finish");
        let done = hs.finish().expect("handshake done");
        Self {
            ws,
            buf,
            write: done.write_cipher,
            read: done.read_cipher,
            wc: 0,
            rc: 0,
        }
    }

    async fn send(&mut self, node: &Node) {
        let plain = wacore_binary::marshal::marshal(node).expect("marshal");
        self.send_plain(&plain).await;
    }

    async fn send_plain(&mut self, plain: &[u8]) {
        let sealed = self
            .write
            .encrypt_with_counter(self.wc, plain)
            .expect("encrypt");
        self.wc += 1;
        self.ws
            .send(Message::Binary(frame(&sealed).into()))
            .await
            .expect("send frame");
    }

    async fn recv(&mut self) -> Option<Node> {
        let mut sealed = read_frame(&mut self.ws, &mut self.buf).await?;
        self.read
            .decrypt_in_place_with_counter(self.rc, &mut sealed)
            .expect("decrypt");
        self.rc += 1;
        let body = wacore_binary::util::unpack(&sealed).expect("unpack");
        Some(
            wacore_binary::marshal::unmarshal_ref(&body)
                .expect("unmarshal")
                .to_owned(),
        )
    }

    /// Receives until a node with `id`, skipping others.
    async fn recv_id(&mut self, id: &str) -> Node {
        loop {
            let node = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("server answers {id}"));
            if attr(&node, "id").as_deref() == Some(id) {
                return node;
            }
        }
    }
}

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.to_string())
}

fn iq(id: &str, xmlns: &str, child: Option<&'static str>) -> Node {
    let b = NodeBuilder::new("iq")
        .attr("id", id.to_owned())
        .attr("type", "get")
        .attr("xmlns", xmlns.to_owned())
        .attr("to", "s.whatsapp.net");
    match child {
        Some(tag) => b.children([NodeBuilder::new(tag).build()]).build(),
        None => b.build(),
    }
}

#[tokio::test]
async fn new_device_gets_refs_pings_are_answered_and_unknown_iqs_get_errors() {
    let mock = MockServer::start(MockConfig {
        qr_refs: 3,
        ..MockConfig::default()
    })
    .await
    .expect("mock starts");
    let mut c = Raw::connect(&mock.ws_url(), b"", b"WA\x06\x03").await;
    let pair = c.recv().await.expect("pair-device arrives");
    let refs = pair
        .children()
        .and_then(|c| c.first())
        .and_then(|pd| pd.children())
        .map(|r| r.len());
    assert_eq!(refs, Some(3), "configured number of refs");

    c.send(&iq("p1", "w:p", None)).await;
    assert_eq!(
        attr(&c.recv_id("p1").await, "type").as_deref(),
        Some("result")
    );
    c.send(&iq("p2", "w:p", Some("ping"))).await;
    assert_eq!(
        attr(&c.recv_id("p2").await, "type").as_deref(),
        Some("result")
    );

    c.send(&iq("u1", "x:made-up", Some("thing"))).await;
    let err = c.recv_id("u1").await;
    assert_eq!(attr(&err, "type").as_deref(), Some("error"));
    let code = err
        .children()
        .and_then(|c| c.first())
        .and_then(|e| attr(e, "code"));
    assert_eq!(code.as_deref(), Some("501"));

    let stats = mock.stats();
    assert_eq!(stats.pings, 2);
    assert_eq!(stats.unknown_iqs, 1);
    assert_eq!(stats.handshakes_xx, 1);
}

#[tokio::test]
async fn header_6_2_and_edge_routing_prefix_are_accepted() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let mut c = Raw::connect(&mock.ws_url(), b"ED\x00\x01\x00\x00\x03abc", b"WA\x06\x02").await;
    let first = c.recv().await.expect("pair-device arrives");
    assert_eq!(first.tag, "iq");
}

#[tokio::test]
async fn a_client_sending_garbage_is_dropped_and_others_keep_working() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let mut good = Raw::connect(&mock.ws_url(), b"", b"WA\x06\x03").await;
    good.recv().await.expect("pair-device");

    let mut bad = Raw::connect(&mock.ws_url(), b"", b"WA\x06\x03").await;
    bad.recv().await.expect("pair-device");
    // Correctly encrypted, but not a binary node.
    bad.send_plain(&[0, 0xff, 0xff, 0xff, 0xff]).await;
    assert!(
        bad.recv().await.is_none(),
        "server closes the bad connection"
    );
    mock.wait_for(STEP, |s| s.protocol_errors == 1 && s.connections_open == 1)
        .await
        .expect("only the bad connection ended");

    // Not WhatsApp at all.
    let (mut junk, _) = tokio_tungstenite::connect_async(mock.ws_url())
        .await
        .expect("ws connects");
    junk.send(Message::Binary(b"HELLO WORLD".to_vec().into()))
        .await
        .expect("send junk");
    mock.wait_for(STEP, |s| s.protocol_errors == 2)
        .await
        .expect("junk connection rejected");

    good.send(&iq("still", "w:p", None)).await;
    assert_eq!(
        attr(&good.recv_id("still").await, "type").as_deref(),
        Some("result")
    );
}

#[tokio::test]
async fn only_the_chat_path_upgrades() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let wrong = mock.ws_url().replace("/ws/chat", "/other");
    assert!(tokio_tungstenite::connect_async(wrong).await.is_err());
}

/// 1,000 simultaneous connections (override with `MOCK_WA_RAW_CONNECTIONS`),
/// each through a full XX handshake, holding its socket while every one of
/// them gets its ping answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_at_once() {
    let n: usize = std::env::var("MOCK_WA_RAW_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let url = mock.ws_url();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let url = url.clone();
        tasks.spawn(async move {
            let mut c = Raw::connect(&url, b"", b"WA\x06\x03").await;
            c.recv().await.expect("pair-device");
            (i, c)
        });
    }
    let mut clients = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        clients.push(done.expect("connection task"));
    }
    let stats = mock
        .wait_for(Duration::from_secs(60), |s| {
            s.connections_open as usize == n
        })
        .await
        .expect("all connections open at once");
    assert_eq!(stats.handshakes_xx as usize, n);
    for (i, c) in &mut clients {
        c.send(&iq(&format!("ping-{i}"), "w:p", None)).await;
    }
    for (i, c) in &mut clients {
        let reply = c.recv_id(&format!("ping-{i}")).await;
        assert_eq!(attr(&reply, "type").as_deref(), Some("result"));
    }
    let stats = mock.stats();
    assert_eq!(stats.pings as usize, n);
    assert_eq!(stats.protocol_errors, 0);
    assert_eq!(stats.connections_open as usize, n);
}

#[tokio::test]
async fn an_unpaired_connection_ends_when_its_refs_are_exhausted() {
    let mock = MockServer::start(MockConfig {
        qr_refs: 2,
        qr_first_ttl: Duration::from_millis(200),
        qr_ttl: Duration::from_millis(100),
        ..MockConfig::default()
    })
    .await
    .expect("mock starts");
    let mut c = Raw::connect(&mock.ws_url(), b"", b"WA\x06\x03").await;
    c.recv().await.expect("pair-device");
    assert!(c.recv().await.is_none(), "server closes after the last ref");
    mock.wait_for(STEP, |s| s.connections_open == 0)
        .await
        .expect("connection closed");
}

/// Attributes whose value is an address: on the wire each must be a JID
/// (JID_PAIR or AD_JID), never a string, or strict clients (whatsmeow
/// compares `from` with its server JID value) ignore the stanza.
const JID_ATTRS: &[&str] = &[
    "from",
    "to",
    "participant",
    "recipient",
    "jid",
    "lid",
    "sender_pn",
    "sender_lid",
    "participant_pn",
    "participant_lid",
    "recipient_pn",
    "recipient_lid",
    "peer_recipient_pn",
    "peer_recipient_lid",
];

/// Every JID-valued attribute in `node` and its children, as `tag.attr`;
/// panics on one that arrived as a string. `<lid val=…>` counts too.
fn check_jid_attrs(node: &Node, seen: &mut std::collections::BTreeSet<String>) {
    for (key, value) in node.attrs.iter() {
        let is_jid_attr =
            JID_ATTRS.contains(&key.as_ref()) || (node.tag == "lid" && key.as_ref() == "val");
        if !is_jid_attr {
            continue;
        }
        assert!(
            matches!(value, wacore_binary::NodeValue::Jid(_)),
            "<{} {key}={value}> arrived as a string, not a JID",
            node.tag
        );
        seen.insert(format!("{}.{key}", node.tag));
    }
    for child in node.children().unwrap_or_default() {
        check_jid_attrs(child, seen);
    }
}

/// Logs a raw device in after pairing it through the admin scan, answering
/// `pair-success` the way a client does (device signature over the ADV
/// details, no `accountSignatureKey`).
async fn pair_raw(
    mock: &mock_wa::MockHandle,
    seen: &mut std::collections::BTreeSet<String>,
) -> (KeyPair, String) {
    use base64::Engine as _;
    use base64::prelude::BASE64_STANDARD as B64;
    let noise = KeyPair::generate(&mut rand::rng());
    let identity = KeyPair::generate(&mut rand::rng());
    let skey = KeyPair::generate(&mut rand::rng());
    let payload = wa::ClientPayload {
        device_pairing_data: buffa::MessageField::some(
            wa::client_payload::DevicePairingRegistrationData {
                e_regid: Some(77u32.to_be_bytes().to_vec()),
                e_keytype: Some(vec![5]),
                e_ident: Some(identity.public_key.public_key_bytes().to_vec()),
                e_skey_id: Some(vec![0, 0, 1]),
                e_skey_val: Some(skey.public_key.public_key_bytes().to_vec()),
                e_skey_sig: Some(vec![0; 64]),
                build_hash: Some(vec![0; 16]),
                device_props: Some(Vec::new()),
            },
        ),
        ..Default::default()
    }
    .encode_to_vec();
    let mut c = Raw::connect_as(&mock.ws_url(), b"", b"WA\x06\x03", noise.clone(), payload).await;
    let pair = c.recv().await.expect("pair-device arrives");
    check_jid_attrs(&pair, seen);
    let first_ref = pair
        .get_optional_child("pair-device")
        .and_then(|p| p.get_optional_child("ref"))
        .and_then(|r| match &r.content {
            Some(wacore_binary::NodeContent::Bytes(b)) => String::from_utf8(b.clone()).ok(),
            _ => None,
        })
        .expect("a ref");
    let adv_secret = [9u8; 32];
    let qr = format!(
        "{first_ref},{},{},{}",
        B64.encode(noise.public_key.public_key_bytes()),
        B64.encode(identity.public_key.public_key_bytes()),
        B64.encode(adv_secret)
    );
    let scan = {
        let state = mock.state().clone();
        tokio::spawn(async move { mock_wa::pairing::scan(&state, &qr, None).await })
    };
    let success = c.recv().await.expect("pair-success arrives");
    check_jid_attrs(&success, seen);
    let container = success
        .get_optional_child("pair-success")
        .and_then(|p| p.get_optional_child("device-identity"))
        .and_then(|d| match &d.content {
            Some(wacore_binary::NodeContent::Bytes(b)) => Some(b.clone()),
            _ => None,
        })
        .expect("device-identity bytes");
    let container = wa::ADVSignedDeviceIdentityHMAC::decode_from_slice(&container).expect("hmac");
    let mut signed =
        wa::ADVSignedDeviceIdentity::decode_from_slice(container.details.as_deref().expect("d"))
            .expect("signed identity");
    let account_key = signed.account_signature_key.take().expect("account key");
    let details = signed.details.clone().expect("details");
    let msg = [
        &[6u8, 1][..],
        &details,
        identity.public_key.public_key_bytes(),
        &account_key,
    ]
    .concat();
    let sig = identity
        .private_key
        .calculate_signature(&msg, &mut rand::rng())
        .expect("sign");
    signed.device_signature = Some(sig.to_vec());
    let reply = NodeBuilder::new("iq")
        .attr("id", attr(&success, "id").expect("iq id"))
        .attr("type", "result")
        .attr(
            "to",
            wacore_binary::Jid::new("", wacore_binary::jid::Server::Pn),
        )
        .children([NodeBuilder::new("pair-device-sign")
            .children([NodeBuilder::new("device-identity")
                .attr("key-index", "1")
                .bytes(signed.encode_to_vec())
                .build()])
            .build()])
        .build();
    c.send(&reply).await;
    let jid = scan.await.expect("scan task").expect("scan succeeds");
    while let Some(node) = c.recv().await {
        check_jid_attrs(&node, seen);
    }
    (noise, jid)
}

/// Everything mock-wa sends a device through pairing, login, IQs, messages
/// both ways and receipts, decoded at the binary-node level: every address
/// attribute is a JID, the server's own included.
#[tokio::test]
async fn every_address_mock_wa_sends_is_a_jid_on_the_wire() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let mut seen = std::collections::BTreeSet::new();
    let (noise, jid) = pair_raw(&mock, &mut seen).await;
    let device: wacore_binary::Jid = jid.parse().expect("device jid");
    let login = wa::ClientPayload {
        username: Some(device.user.parse().expect("numeric user")),
        device: Some(u32::from(device.device)),
        passive: Some(false),
        ..Default::default()
    }
    .encode_to_vec();
    let mut c = Raw::connect_as(&mock.ws_url(), b"", b"WA\x06\x03", noise, login).await;
    let success = c.recv().await.expect("success");
    assert_eq!(success.tag, "success");
    check_jid_attrs(&success, &mut seen);

    let server = || wacore_binary::Jid::new("", wacore_binary::jid::Server::Pn);
    let contact = wacore_binary::Jid::pn("15557654321");
    let ask = |id: &str, node: Node| {
        let mut node = node;
        node.attrs.insert("id", id.to_owned());
        node
    };
    let identity = KeyPair::generate(&mut rand::rng());
    let skey = KeyPair::generate(&mut rand::rng());
    let prekey = KeyPair::generate(&mut rand::rng());
    let skey_signature = identity
        .private_key
        .calculate_signature(&skey.public_key.serialize(), &mut rand::rng())
        .expect("sign the signed prekey");
    let upload = NodeBuilder::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "set")
        .attr("to", server())
        .children([
            NodeBuilder::new("registration")
                .bytes(77u32.to_be_bytes().to_vec())
                .build(),
            NodeBuilder::new("type").bytes(vec![5]).build(),
            NodeBuilder::new("identity")
                .bytes(identity.public_key.public_key_bytes().to_vec())
                .build(),
            NodeBuilder::new("list")
                .children([NodeBuilder::new("key")
                    .children([
                        NodeBuilder::new("id").bytes(vec![0, 0, 1]).build(),
                        NodeBuilder::new("value")
                            .bytes(prekey.public_key.public_key_bytes().to_vec())
                            .build(),
                    ])
                    .build()])
                .build(),
            NodeBuilder::new("skey")
                .children([
                    NodeBuilder::new("id").bytes(vec![0, 0, 1]).build(),
                    NodeBuilder::new("value")
                        .bytes(skey.public_key.public_key_bytes().to_vec())
                        .build(),
                    NodeBuilder::new("signature")
                        .bytes(skey_signature.to_vec())
                        .build(),
                ])
                .build(),
        ])
        .build();
    let usync = NodeBuilder::new("iq")
        .attr("xmlns", "usync")
        .attr("type", "get")
        .attr("to", server())
        .children([NodeBuilder::new("usync")
            .attr("sid", "s1")
            .attr("mode", "query")
            .attr("context", "message")
            .children([
                NodeBuilder::new("query")
                    .children([
                        NodeBuilder::new("devices").attr("version", "2").build(),
                        NodeBuilder::new("lid").build(),
                    ])
                    .build(),
                NodeBuilder::new("list")
                    .children([NodeBuilder::new("user")
                        .attr("jid", contact.clone())
                        .build()])
                    .build(),
            ])
            .build()])
        .build();
    let fetch = NodeBuilder::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "get")
        .attr("to", server())
        .children([NodeBuilder::new("key")
            .children([NodeBuilder::new("user")
                .attr("jid", contact.clone())
                .build()])
            .build()])
        .build();
    // A message the contact cannot decrypt: acked, then a retry receipt.
    let message = NodeBuilder::new("message")
        .attr("id", "3EB0WIRE")
        .attr("to", contact.clone())
        .attr("type", "text")
        .children([NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", "msg")
            .bytes(vec![1, 2, 3])
            .build()])
        .build();
    for (id, node) in [
        ("up", upload),
        ("us", usync),
        ("fe", fetch),
        ("pi", iq("pi", "w:p", None)),
        ("un", iq("un", "x:made-up", Some("thing"))),
    ] {
        c.send(&ask(id, node)).await;
        check_jid_attrs(&c.recv_id(id).await, &mut seen);
    }
    c.send(&message).await;
    check_jid_attrs(&c.recv_id("3EB0WIRE").await, &mut seen);
    let retry = c.recv_id("3EB0WIRE").await;
    assert_eq!(retry.tag, "receipt");
    check_jid_attrs(&retry, &mut seen);

    let msg_id = mock
        .deliver("15557654321", &device.user, "over the wire", None)
        .await
        .expect("deliver");
    let incoming = c.recv_id(&msg_id).await;
    assert_eq!(incoming.tag, "message");
    check_jid_attrs(&incoming, &mut seen);
    mock.receipt(
        "15557654321",
        &device.user,
        "3EB0WIRE",
        mock_wa::messaging::ReceiptKind::Read,
    )
    .await
    .expect("receipt");
    let receipt = c.recv_id("3EB0WIRE").await;
    check_jid_attrs(&receipt, &mut seen);

    for expected in [
        "iq.from",
        "device.jid",
        "device.lid",
        "success.lid",
        "user.jid",
        "ack.from",
        "receipt.from",
        "message.from",
        "message.sender_pn",
        "lid.val",
    ] {
        assert!(seen.contains(expected), "{expected} never seen: {seen:?}");
    }
}
