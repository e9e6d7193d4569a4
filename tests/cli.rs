//! The real `walink` binary against a fake-handler server in this process.

mod common;

use std::path::Path;
use std::process::Output;

use common::start;
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::time::timeout;
use walink::ipc::protocol::{HealthLevel, StatusResult};

async fn walink(socket: &Path, args: &[&str]) -> Output {
    let run = Command::new(env!("CARGO_BIN_EXE_walink"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("WALINK_SOCKET")
        .kill_on_drop(true)
        .output();
    timeout(common::DEADLINE, run)
        .await
        .expect("walink finished in time")
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_is_what_the_daemon_sent() {
    let server = start();
    let out = walink(&server.path, &["status", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let expected = StatusResult {
        accounts: vec![
            common::account("sales", HealthLevel::Healthy),
            common::account("slow", HealthLevel::Degraded),
            common::account("dead", HealthLevel::Critical),
        ],
    };
    assert_eq!(printed, json!(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_table_is_readable() {
    let server = start();
    let out = walink(&server.path, &["status"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ACCOUNT  STATE"), "{text}");
    let sales = lines.iter().find(|l| l.starts_with("sales ")).expect(&text);
    assert!(
        sales.contains("connected") && sales.contains("healthy") && sales.contains("1h 02m"),
        "{sales}"
    );
    // Columns line up: HEALTH starts at the same offset in the header and rows.
    let column = lines[0].find("HEALTH").unwrap();
    assert_eq!(&sales[column..column + 7], "healthy");
    assert!(text.contains("→ walink reconnect slow"), "{text}");

    let out = walink(&server.path, &["status", "sales"]).await;
    let detail = stdout(&out);
    assert!(detail.contains("keepalive rtt:"), "{detail}");
    assert!(detail.contains("42 ms"), "{detail}");
    assert!(detail.contains("stored, valid, 40.0 KiB"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exit_codes_follow_the_level() {
    let server = start();
    for (account, code) in [("sales", 0), ("slow", 1), ("dead", 2)] {
        let out = walink(&server.path, &["health", account]).await;
        assert_eq!(out.status.code(), Some(code), "{account}: {}", stderr(&out));
        assert!(stdout(&out).contains(account));
    }
    // All accounts: the worst wins.
    let out = walink(&server.path, &["health", "--json"]).await;
    assert_eq!(out.status.code(), Some(2));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed["level"], json!("critical"));
    assert_eq!(printed["accounts"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_request_exits_3_with_the_daemons_reason() {
    let server = start();
    let out = walink(&server.path, &["status", "nobody"]).await;
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.starts_with("walink: status: unknown account \"nobody\""),
        "{err}"
    );
    assert!(
        err.contains("configured accounts: sales, slow, dead"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_daemon_exits_4_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = walink(&dir.path().join("none.sock"), &["status"]).await;
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.starts_with("walink: cannot connect to walinkd: "),
        "{err}"
    );
    assert!(err.contains("is walinkd running?"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_64_before_contacting_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("never-used.sock");
    for (args, expected) in [
        (
            &["send", "sales", "12", "hi"][..],
            "invalid recipient \"12\"",
        ),
        (
            &["send", "sales", "+15551234567", " "][..],
            "the text is empty",
        ),
        (
            &["pair-code", "sales", "phone"][..],
            "invalid phone number \"phone\"",
        ),
        (&["qr", "Sales"][..], "invalid account name \"Sales\""),
        (&["frobnicate"][..], "unrecognized subcommand"),
    ] {
        let out = walink(&socket, args).await;
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_raw_prints_each_payload_then_the_jid() {
    let server = start();
    let out = walink(&server.path, &["qr", "sales", "--raw"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "2@first,AAAA,BBBB,CCCC\n2@second,DDDD,EEEE,FFFF\n15551234567:4@s.whatsapp.net\n"
    );

    let drawn = walink(&server.path, &["qr", "sales"]).await;
    assert_eq!(drawn.status.code(), Some(0));
    let text = stdout(&drawn);
    assert_eq!(text.matches("Scan with WhatsApp").count(), 2, "{text}");
    assert!(text.contains('▀') || text.contains('▄'), "{text}");
    assert!(
        text.trim_end().ends_with("15551234567:4@s.whatsapp.net"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_prints_the_message_id() {
    let server = start();
    let out = walink(
        &server.path,
        &[
            "send",
            "sales",
            "+1 555 123 4567",
            "order shipped",
            "--id",
            "o-7",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "3EB0C0FFEE\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_print_one_line_each() {
    let server = start();
    let out = walink(&server.path, &["events", "finite"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "2025-11-22 01:46:40 UTC  sales  state_changed attempt=2 reason=network state=reconnecting\n\
         2025-11-22 01:46:40 UTC  sales  paired jid=1@s.whatsapp.net\n"
    );
    let out = walink(&server.path, &["--json", "events", "finite"]).await;
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[1],
        json!({"account": "sales", "at": 1763776000, "kind": "paired", "jid": "1@s.whatsapp.net"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_comes_from_the_environment() {
    let server = start();
    let run = Command::new(env!("CARGO_BIN_EXE_walink"))
        .args(["health", "sales"])
        .env("WALINK_SOCKET", &server.path)
        .output();
    let out = timeout(common::DEADLINE, run).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_end_when_the_daemon_shuts_down() {
    use tokio::io::AsyncBufReadExt;

    let mut server = start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_walink"))
        .arg("--socket")
        .arg(&server.path)
        .arg("events")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = timeout(common::DEADLINE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("state_changed"), "{first}");

    server.shutdown.cancel();
    let out = timeout(common::DEADLINE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("walinkd is shutting down"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        timeout(common::DEADLINE, server.dropped.recv())
            .await
            .unwrap(),
        Some("dropped")
    );
    timeout(common::DEADLINE, server.task)
        .await
        .unwrap()
        .unwrap();
}
