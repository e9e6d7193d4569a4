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
    let stats = mock
        .wait_for(step, |s| s.connections_open as usize == n)
        .await
        .expect("every client holds one connection");
    assert_eq!(stats.pairings as usize, n);
    assert!(stats.logins as usize >= n);
    assert_eq!(stats.protocol_errors, 0, "{stats:?}");
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_pair_and_stay_connected() {
    let n = std::env::var("MOCK_WA_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    pair_many(n).await;
}
