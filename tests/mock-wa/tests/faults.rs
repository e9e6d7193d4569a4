//! Injected faults reach whatsapp-rust the way real server behaviour does.

mod common;

use common::{init_logging, paired_client};
use mock_wa::{Fault, MockConfig, MockServer};
use std::time::Duration;
use whatsapp_rust::types::events::Event;

const CONNECT: Duration = Duration::from_secs(60);

async fn reconnects_after(fault: Fault) {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let (mut client, jid) = paired_client(&mock).await;
    let before = mock.stats();
    assert_eq!(
        mock.fault(&jid, fault),
        1,
        "the device has one live session"
    );
    client.wait_connected(CONNECT).await;
    let after = mock
        .wait_for(Duration::from_secs(10), |s| s.logins > before.logins)
        .await
        .expect("client logged in again");
    assert!(after.handshakes_ik > before.handshakes_ik, "{after:?}");
    assert_eq!(after.pairings, 1);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_515_makes_the_client_reconnect() {
    reconnects_after(Fault::StreamError(515)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_frame_makes_the_client_reconnect() {
    reconnects_after(Fault::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_makes_the_client_reconnect() {
    reconnects_after(Fault::Eof).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_401_logs_the_client_out() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let (mut client, jid) = paired_client(&mock).await;
    assert_eq!(mock.fault(&jid, Fault::StreamError(401)), 1);
    client
        .wait_event(CONNECT, "LoggedOut", |e| {
            matches!(e, Event::LoggedOut(_)).then_some(())
        })
        .await;
    assert!(mock.devices().is_empty(), "401 removes the device");
    mock.wait_for(Duration::from_secs(10), |s| s.connections_open == 0)
        .await
        .expect("connection closed");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_440_replaces_the_session() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let (mut client, jid) = paired_client(&mock).await;
    assert_eq!(mock.fault(&jid, Fault::StreamError(440)), 1);
    client
        .wait_event(CONNECT, "StreamReplaced", |e| {
            matches!(e, Event::StreamReplaced(_)).then_some(())
        })
        .await;
    mock.wait_for(Duration::from_secs(10), |s| s.connections_open == 0)
        .await
        .expect("connection closed");
    assert_eq!(
        mock.devices().len(),
        1,
        "a replaced session keeps its device"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted_until_refusal_ends() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let (mut client, jid) = paired_client(&mock).await;
    mock.refuse(600);
    assert_eq!(mock.fault(&jid, Fault::Eof), 1);
    let refused = mock
        .wait_for(Duration::from_secs(30), |s| s.connections_refused >= 2)
        .await
        .expect("reconnect attempts are refused");
    assert!(refused.connection_attempts >= refused.connections_refused + 2);
    let logins = refused.logins;
    mock.refuse(0);
    client.wait_connected(CONNECT).await;
    let after = mock.stats();
    assert_eq!(after.logins, logins + 1, "{after:?}");
    client.shutdown().await;
}

/// The mock keeps the socket open and answers nothing; whatsapp-rust's
/// keepalive (15–30 s interval, 20 s deadline) must notice and reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_is_detected_by_keepalive_and_the_client_reconnects() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let (mut client, jid) = paired_client(&mock).await;
    let before = mock.stats();
    assert_eq!(mock.fault(&jid, Fault::Blackhole), 1);
    // whatsapp-rust reports a forced reconnect only through the next Connected.
    client.wait_connected(Duration::from_secs(120)).await;
    let after = mock.stats();
    assert_eq!(after.logins, before.logins + 1, "{after:?}");
    assert!(after.handshakes_ik > before.handshakes_ik);
    client.shutdown().await;
}

/// Without faults the session stays up: keepalive pings are answered and
/// nothing the client sends in steady state is unknown to the mock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_pings_are_answered_and_the_session_stays_up() {
    init_logging();
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let (client, _jid) = paired_client(&mock).await;
    let before = mock.stats();
    let after = mock
        .wait_for(Duration::from_secs(75), |s| s.pings >= before.pings + 2)
        .await
        .expect("two keepalive pings within 75 s");
    assert_eq!(after.logins, before.logins, "no reconnect: {after:?}");
    assert_eq!(after.connections_open, 1);
    assert_eq!(after.unknown_iqs, 0, "{after:?}");
    assert_eq!(after.protocol_errors, 0, "{after:?}");
    client.shutdown().await;
}
