//! Many whatsapp-rust clients against one mock at once.

mod common;

use common::{TestClient, init_logging, paired_client_within};
use mock_wa::{MockConfig, MockServer};
use std::sync::Arc;
use std::time::Duration;

async fn pair_many(n: usize) {
    init_logging();
    // Generous for the clients' own work (each generates and uploads its
    // prekeys on two shared cores); the server side alone is exercised at
    // 1,000 connections in tests/raw.rs.
    let step = Duration::from_secs(60) + Duration::from_millis(300) * n as u32;
    let mock = Arc::new(
        MockServer::start(MockConfig {
            pair_timeout: step,
            ..MockConfig::default()
        })
        .await
        .expect("mock starts"),
    );
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let mock = mock.clone();
        tasks.push(tokio::spawn(async move {
            paired_client_within(&mock, step).await
        }));
    }
    let mut clients: Vec<TestClient> = Vec::with_capacity(n);
    for t in tasks {
        clients.push(t.await.expect("client task").0);
    }
    let settled = mock
        .wait_for(step, |s| s.connections_open as usize == n)
        .await
        .expect("every client holds one connection");
    // Holding means staying: an idle whatsapp-rust client pings every
    // 15–30 s and drops a connection that leaves a ping unanswered for 20 s;
    // n answered pings is one keepalive round per client on average, long
    // enough for a starved or dead connection to show as a new login.
    let stats = mock
        .wait_for(step, |s| s.pings as usize >= n)
        .await
        .expect("the clients keep their connections alive with pings");
    assert_eq!(stats.pairings as usize, n);
    // At least one login per client after its pairing (under load a client
    // may drop and redo a login that had not completed yet), and none
    // since they were all connected: nobody reconnected while holding.
    assert!(settled.logins as usize >= n, "{settled:?}");
    assert_eq!(stats.logins, settled.logins, "{stats:?}");
    assert_eq!(stats.connections_open as usize, n, "{stats:?}");
    assert_eq!(stats.protocol_errors, 0, "{stats:?}");
    assert_eq!(stats.handshake_timeouts, 0, "{stats:?}");
    let devices = mock.devices();
    assert_eq!(devices.len(), n);
    assert!(devices.iter().all(|d| d.connected));
    for c in clients {
        c.shutdown().await;
    }
    mock.wait_for(step, |s| s.connections_open == 0)
        .await
        .expect("all connections closed");
}

/// 50 clients by default; `MOCK_WA_CLIENTS=N` runs N (see README).
///
/// Each whatsapp-rust client generates its 812 one-time prekeys on the
/// runtime's blocking pool. With tokio's default of 512 blocking threads,
/// a thousand clients' key generation outnumbers the two worker threads that
/// run every connection, the mock's and the clients' alike, and starves them
/// for longer than a client waits for a pong. Real clients bring their own
/// CPUs; here the pool gets as many threads as there are workers.
#[test]
fn many_clients_pair_and_stay_connected() {
    let n = std::env::var("MOCK_WA_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
        .block_on(pair_many(n));
}
