//! The `mock-wa` binary: its address line and the admin HTTP API.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const STEP: Duration = Duration::from_secs(20);

/// One HTTP/1.1 request; returns (status, JSON body).
async fn http(admin: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let host = admin.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(host).await.expect("admin reachable");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = String::new();
    tokio::time::timeout(STEP, tcp.read_to_string(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("complete response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, serde_json::from_str(body).expect("JSON body"))
}

#[tokio::test]
async fn binary_prints_addresses_and_serves_the_admin_api() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-wa"))
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    tokio::time::timeout(STEP, BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("address line in time")
        .expect("read address line");
    let info: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let ws = info["ws"].as_str().expect("ws url");
    let admin = info["admin"].as_str().expect("admin url");
    assert!(
        ws.starts_with("ws://127.0.0.1:") && ws.ends_with("/ws/chat"),
        "{ws}"
    );
    assert!(admin.starts_with("http://127.0.0.1:"), "{admin}");
    assert_eq!(
        info["root_key"].as_str().map(str::len),
        Some(44),
        "base64 of 32 bytes"
    );

    let (status, stats) = http(admin, "GET", "/admin/stats", "").await;
    assert_eq!(status, 200);
    for key in [
        "connections_open",
        "connection_attempts",
        "connections_refused",
        "handshakes_xx",
        "handshakes_ik",
        "logins",
        "pairings",
        "pings",
        "messages_received",
        "messages_acked",
        "receipts_sent",
    ] {
        assert_eq!(stats[key].as_u64(), Some(0), "{key} in {stats}");
    }

    assert_eq!(
        http(admin, "GET", "/admin/devices", "").await,
        (200, serde_json::json!([]))
    );
    let (status, body) = http(admin, "POST", "/admin/refuse", r#"{"seconds":30}"#).await;
    assert_eq!((status, body["refusing_for"].as_u64()), (200, Some(30)));
    // While refusing, the upgrade is turned away and counted.
    assert!(tokio_tungstenite::connect_async(ws).await.is_err());
    let (_, stats) = http(admin, "GET", "/admin/stats", "").await;
    assert_eq!(stats["connections_refused"].as_u64(), Some(1));
    assert_eq!(stats["connection_attempts"].as_u64(), Some(1));

    let (status, body) = http(
        admin,
        "POST",
        "/admin/fault",
        r#"{"target":"all","kind":"stream-error","code":515}"#,
    )
    .await;
    assert_eq!((status, body["affected"].as_u64()), (200, Some(0)));
    let (status, body) = http(
        admin,
        "POST",
        "/admin/fault",
        r#"{"target":"all","kind":"explode"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("explode")),
        "{body}"
    );

    let (status, body) = http(admin, "POST", "/admin/scan", "not-a-qr").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = http(admin, "GET", "/admin/nothing", "").await;
    assert_eq!(status, 404);

    child.kill().await.expect("stop the binary");
}
