//! Pairing through a QR scan and logging in again without one.

mod common;

use common::{TestClient, init_logging, paired_client};
use mock_wa::{MockConfig, MockServer, PairError};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_then_restart_logs_in_via_ik_without_qr() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let (client, jid) = paired_client(&mock).await;
    assert_eq!(jid, "15550000001:1@s.whatsapp.net");
    let pn = client
        .client
        .pn()
        .expect("client knows its JID after pairing");
    assert_eq!(pn.to_string(), jid);
    let before = mock.stats();
    assert_eq!(before.pairings, 1);
    assert!(before.logins >= 1, "{before:?}");
    assert_eq!(mock.devices().len(), 1);
    assert!(mock.devices()[0].connected);

    let backend = client.shutdown().await;
    mock.wait_for(Duration::from_secs(10), |s| s.connections_open == 0)
        .await
        .expect("client disconnects");

    let mut again = TestClient::start(&mock.ws_url(), Some(backend)).await;
    again.wait_connected(Duration::from_secs(60)).await;
    let after = mock.stats();
    assert_eq!(after.pairings, 1, "no second pairing: {after:?}");
    assert!(
        after.handshakes_ik > before.handshakes_ik,
        "IK login: {after:?}"
    );
    assert_eq!(after.logins, before.logins + 1);
    assert_eq!(again.client.pn().map(|j| j.to_string()), Some(jid));
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_shares_its_app_state_sync_key_with_a_new_companion() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let (client, jid) = paired_client(&mock).await;
    let keys = mock_wa::messaging::app_state_keys("15550000001");
    assert!(!keys.is_empty());
    for key in &keys {
        let stored = client
            .backend
            .get_sync_key(&key.id)
            .await
            .expect("the store answers")
            .unwrap_or_else(|| panic!("the client stored key {:02x?}", key.id));
        assert_eq!(stored.key_data, key.data);
        assert_eq!(stored.timestamp, key.timestamp);
    }
    assert_eq!(
        client
            .backend
            .get_latest_sync_key_id()
            .await
            .expect("the store answers"),
        Some(keys[keys.len() - 1].id.clone())
    );
    let messaging = mock.messaging().expect("messaging side runs");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while messaging.pending(&jid).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never acknowledged the key share"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_removes_the_device_and_its_next_login_fails() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let (client, _jid) = paired_client(&mock).await;
    client.client.logout().await;
    assert!(
        mock.devices().is_empty(),
        "remove-companion-device was honoured"
    );
    let backend = client.shutdown().await;

    let mut again = TestClient::start(&mock.ws_url(), Some(backend)).await;
    again
        .wait_event(Duration::from_secs(60), "LoggedOut", |e| {
            matches!(e, whatsapp_rust::types::events::Event::LoggedOut(_)).then_some(())
        })
        .await;
    assert_eq!(mock.stats().login_failures, 1);
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_ik_falls_back_to_xxfallback_and_still_logs_in() {
    init_logging();
    let mock = MockServer::start(MockConfig {
        accept_ik: false,
        ..MockConfig::default()
    })
    .await
    .expect("mock starts");
    let (client, jid) = paired_client(&mock).await;
    let backend = client.shutdown().await;
    let before = mock.stats();

    let mut again = TestClient::start(&mock.ws_url(), Some(backend)).await;
    again.wait_connected(Duration::from_secs(60)).await;
    let after = mock.stats();
    assert_eq!(
        after.handshakes_xx_fallback,
        before.handshakes_xx_fallback + 1
    );
    assert_eq!(after.handshakes_ik, before.handshakes_ik);
    assert_eq!(after.logins, before.logins + 1);
    assert_eq!(again.client.pn().map(|j| j.to_string()), Some(jid));
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_of_wrong_qr_payloads_are_rejected_without_pairing() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let mut c = TestClient::start(&mock.ws_url(), None).await;
    let qr = c
        .wait_event(Duration::from_secs(30), "PairingQrCode", |e| match e {
            whatsapp_rust::types::events::Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await;
    let parts: Vec<&str> = qr.split(',').collect();

    assert!(matches!(
        mock.scan("ref-only").await,
        Err(PairError::BadQr(_))
    ));
    let unknown_ref = [&["2@nope"][..], &parts[1..]].concat().join(",");
    assert!(matches!(
        mock.scan(&unknown_ref).await,
        Err(PairError::UnknownRef)
    ));
    // The identity key of another device in place of this one's.
    let other_identity = "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=";
    let mut swapped = parts.clone();
    swapped[2] = other_identity;
    assert!(matches!(
        mock.scan(&swapped.join(",")).await,
        Err(PairError::KeyMismatch)
    ));
    assert_eq!(mock.stats().pairings, 0);

    // None of that used up the ref: the real QR still pairs.
    let jid = mock.scan(&qr).await.expect("the genuine QR pairs");
    c.wait_connected(Duration::from_secs(60)).await;
    assert_eq!(c.client.pn().map(|j| j.to_string()), Some(jid));
    assert!(
        matches!(mock.scan(&qr).await, Err(PairError::UnknownRef)),
        "a ref pairs once"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qr_link_form_pairs_too() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let mut c = TestClient::start(&mock.ws_url(), None).await;
    let qr = c
        .wait_event(Duration::from_secs(60), "PairingQrCode", |e| match e {
            whatsapp_rust::types::events::Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await;
    let link = format!("https://wa.me/settings/linked_devices#{qr},https://faq.whatsapp.com/r/ld");
    let jid = mock.scan(&link).await.expect("the link form pairs");
    c.wait_connected(Duration::from_secs(60)).await;
    assert_eq!(c.client.pn().map(|j| j.to_string()), Some(jid));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_by_phone_number_code_links_the_device_to_that_number() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let mut c = TestClient::start(&mock.ws_url(), None).await;
    // The client is registered (it has refs) once it shows a QR.
    c.wait_event(Duration::from_secs(60), "PairingQrCode", |e| {
        matches!(e, whatsapp_rust::types::events::Event::PairingQrCode(_)).then_some(())
    })
    .await;
    let err = mock
        .enter_pair_code("15551112222", "ABCD2345")
        .await
        .expect_err("no code was asked for this number yet");
    assert!(matches!(err, PairError::NoCodeRequest(_)), "{err}");
    let code = c
        .client
        .pair_with_code(whatsapp_rust::wacore::pair_code::PairCodeOptions {
            phone_number: "15551112222".into(),
            ..Default::default()
        })
        .await
        .expect("stage 1 answers with a code");
    assert!(matches!(
        mock.enter_pair_code("15551112222", "not-a-code").await,
        Err(PairError::BadCode(_))
    ));
    let jid = mock
        .enter_pair_code("+1 555 111 2222", &code)
        .await
        .expect("the phone takes the code");
    assert_eq!(jid, "15551112222:1@s.whatsapp.net");
    c.wait_connected(Duration::from_secs(60)).await;
    assert_eq!(c.client.pn().map(|j| j.to_string()), Some(jid));
    assert_eq!(mock.stats().pairings, 1);
    c.shutdown().await;
}
