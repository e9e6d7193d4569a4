//! Reaching WhatsApp from hard networks, and watching walink: `diagnose`
//! (passing, and one case per failing step), proxies (SOCKS5 with remote DNS,
//! HTTP CONNECT with a credentials file, wrong proxies), the IP family
//! policy, the Prometheus listener and `status --watch`, against mock-wa and
//! a real proxy on loopback.

mod harness;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use harness::proxy::{Kind, TestProxy};
use harness::{CLIENT_VERSION, Env, eventually};
use mock_wa::Fault;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use walink::net::IpFamily;
use walink::wa::{ConnectionSettings, DiagnoseReport, StepStatus, diagnose};

const CONNECT: Duration = Duration::from_secs(40);
const CONTACT: &str = "15557654321";
const CONTACT_JID: &str = "15557654321@s.whatsapp.net";

/// Writes a complete config with the version pinned: extra `[daemon]` and
/// `[connection]` keys, and accounts as raw TOML.
fn write_config(env: &Env, daemon: &str, connection: &str, accounts: &str) {
    env.write_raw_config(
        daemon,
        &format!("client_version = {CLIENT_VERSION:?}\nconnect_timeout_secs = 3\n{connection}"),
        accounts,
    );
}

fn settings(url: &str) -> ConnectionSettings {
    ConnectionSettings {
        url: url.to_owned(),
        connect_timeout: Duration::from_secs(2),
        client_version: None,
        ip_family: IpFamily::Auto,
        proxy: None,
    }
}

fn step<'a>(report: &'a DiagnoseReport, name: &str) -> &'a walink::wa::DiagnoseStep {
    report
        .steps
        .iter()
        .find(|s| s.step == name)
        .unwrap_or_else(|| panic!("no step {name} in {report:#?}"))
}

/// Asserts `failed` is the one failed step, with a hint, and that nothing
/// after it ran.
fn assert_fails_at(report: &DiagnoseReport, failed: &str, detail: &str) {
    assert!(!report.ok, "{report:#?}");
    let s = step(report, failed);
    assert_eq!(s.status, StepStatus::Failed, "{report:#?}");
    assert!(s.detail.contains(detail), "{failed}: {:?}", s.detail);
    assert!(s.hint.as_deref().is_some_and(|h| !h.is_empty()));
    assert!(report.verdict.starts_with(&format!("{failed} failed")));
    let at = report.steps.iter().position(|s| s.step == failed).unwrap();
    for later in &report.steps[at + 1..] {
        assert_eq!(
            later.status,
            StepStatus::Skipped,
            "{later:?} after {failed}"
        );
    }
}

async fn walink_json(env: &Env, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = env.walink(&all).await;
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "walink {args:?} printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_passes_every_step_against_the_mock() {
    let mut env = Env::new(&[]).await;
    let url = format!("ws://localhost:{}/ws/chat", env.mock_port());
    write_config(
        &env,
        "",
        &format!("url = {url:?}"),
        "[[account]]\nname = \"sales\"\n",
    );
    env.start_daemon().await;

    let out = env.walink(&["diagnose", "sales"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("OK: WhatsApp's server answered"), "{text}");
    assert!(text.contains("for account sales"), "{text}");

    let (code, report) = walink_json(&env, &["diagnose"]).await;
    assert_eq!(code, Some(0));
    let report: DiagnoseReport = serde_json::from_value(report).unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.account, None, "no account: the daemon's settings");
    let dns = step(&report, "dns");
    assert_eq!(dns.status, StepStatus::Ok);
    assert!(dns.detail.contains("A 127.0.0.1"), "{dns:?}");
    assert!(dns.duration_ms.is_some());
    assert_eq!(step(&report, "tcp_ipv4").status, StepStatus::Ok);
    // The mock listens on IPv4 only: an AAAA for localhost (some hosts have
    // one) is at most a warning, since IPv4 works.
    assert!(matches!(
        step(&report, "tcp_ipv6").status,
        StepStatus::Skipped | StepStatus::Warning
    ));
    let tls = step(&report, "tls");
    assert_eq!(
        (tls.status, tls.detail.as_str()),
        (StepStatus::Skipped, "not used (ws://)")
    );
    assert_eq!(step(&report, "websocket").status, StepStatus::Ok);
    let noise = step(&report, "noise");
    assert_eq!(noise.status, StepStatus::Ok, "{noise:?}");
    assert!(noise.detail.contains("certificate chain verified"));

    // The check at start found nothing wrong, and says so in the log.
    eventually(CONNECT, "the start check is logged", || async {
        env.daemon_log()
            .contains("network check passed")
            .then_some(())
    })
    .await;
    let status = env.status("sales").await;
    assert!(
        !status["health"]["reasons"].to_string().contains("network"),
        "{status}"
    );
}

#[tokio::test]
async fn diagnose_unresolvable_host_fails_at_dns_quickly() {
    let started = std::time::Instant::now();
    let report = diagnose(&settings("wss://walink-test.invalid/ws/chat"), None).await;
    assert_fails_at(&report, "dns", "walink-test.invalid");
    assert!(
        step(&report, "dns")
            .hint
            .as_ref()
            .unwrap()
            .contains("resolv.conf")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the resolver is bounded by the connect timeout"
    );
}

#[tokio::test]
async fn diagnose_refused_port_fails_at_tcp() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let report = diagnose(&settings(&format!("ws://{closed}/ws/chat")), None).await;
    assert_fails_at(&report, "tcp_ipv4", "refused");
    assert!(
        step(&report, "tcp_ipv4")
            .hint
            .as_ref()
            .unwrap()
            .contains("port")
    );
    assert_eq!(step(&report, "tcp_ipv6").status, StepStatus::Skipped);
}

#[tokio::test]
async fn diagnose_tls_to_a_plain_port_fails_at_tls() {
    let mock = mock_wa::MockServer::start(mock_wa::MockConfig::default())
        .await
        .unwrap();
    let url = mock.ws_url().replace("ws://", "wss://");
    let report = diagnose(&settings(&url), None).await;
    assert_fails_at(&report, "tls", "TLS handshake");
    assert_eq!(step(&report, "tcp_ipv4").status, StepStatus::Ok);
    assert!(
        step(&report, "tls")
            .hint
            .as_ref()
            .unwrap()
            .contains("ws://")
    );
}

#[tokio::test]
async fn diagnose_wrong_websocket_path_fails_with_the_404() {
    let mock = mock_wa::MockServer::start(mock_wa::MockConfig::default())
        .await
        .unwrap();
    let url = mock.ws_url().replace("/ws/chat", "/chat");
    let report = diagnose(&settings(&url), None).await;
    assert_fails_at(&report, "websocket", "404");
    assert!(
        step(&report, "websocket")
            .hint
            .as_ref()
            .unwrap()
            .contains("/ws/chat")
    );
}

#[tokio::test]
async fn diagnose_server_that_never_answers_the_hello_fails_at_noise() {
    // Accepts the WebSocket upgrade, then reads and never answers: what a
    // filtering middlebox or a wrong server looks like.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        use futures::StreamExt;
        while let Some(Ok(_)) = ws.next().await {}
    });
    let started = std::time::Instant::now();
    let report = diagnose(&settings(&format!("ws://{addr}/ws/chat")), None).await;
    assert_fails_at(&report, "noise", "did not answer");
    assert_eq!(step(&report, "websocket").status, StepStatus::Ok);
    assert!(started.elapsed() < Duration::from_secs(10));
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_at_start_is_in_health_and_the_log() {
    let mut env = Env::new(&[]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    write_config(
        &env,
        "",
        &format!("url = \"ws://{closed}/ws/chat\""),
        "[[account]]\nname = \"sales\"\n",
    );
    env.start_daemon().await;
    let status = eventually(CONNECT, "the check's verdict in health", || async {
        let s = env.status("sales").await;
        s["health"]["reasons"]
            .to_string()
            .contains("network check: tcp_ipv4 failed")
            .then_some(s)
    })
    .await;
    assert_eq!(status["health"]["level"], "degraded", "{status}");
    assert!(env.daemon_log().contains("network check failed"));

    let out = env.walink(&["diagnose", "sales"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a failed step exits 1: {text}");
    assert!(text.contains("FAILED: tcp_ipv4 failed"), "{text}");
    assert!(text.contains("→ tcp_ipv4:"), "the hint is shown: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_proxy_carries_the_connection_and_resolves_the_name() {
    let mut env = Env::new(&[]).await;
    let mock_addr: SocketAddr = format!("127.0.0.1:{}", env.mock_port()).parse().unwrap();
    // `.test` never resolves locally: only the proxy knows this name.
    let proxy = TestProxy::start(
        Kind::Socks5,
        Some(("bob", "hunter2")),
        &[("mock-wa.test", mock_addr)],
    )
    .await;
    write_config(
        &env,
        "",
        &format!(
            "url = \"ws://mock-wa.test:{}/ws/chat\"\nproxy = \"socks5://bob:hunter2@{}\"",
            mock_addr.port(),
            proxy.addr
        ),
        "[[account]]\nname = \"sales\"\npair_on_start = true\n",
    );
    env.start_daemon().await;
    env.wait_state("sales", "waiting_for_pairing", CONNECT)
        .await;
    let granted = proxy.granted();
    assert!(!granted.is_empty(), "the connection went through the proxy");
    for tunnel in &granted {
        assert_eq!(tunnel.target, format!("mock-wa.test:{}", mock_addr.port()));
        assert_eq!(tunnel.credentials.as_deref(), Some("bob"));
    }
    assert!(env.mock.stats().connection_attempts >= 1);

    let (code, report) = walink_json(&env, &["diagnose", "sales"]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["proxy"], format!("socks5://{}", proxy.addr));
    let steps = report["steps"].as_array().unwrap();
    let status_of = |name: &str| {
        steps.iter().find(|s| s["step"] == name).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        status_of("dns"),
        "skipped",
        "the proxy resolves: {report:#}"
    );
    assert_eq!(status_of("proxy"), "ok");
    assert_eq!(status_of("noise"), "ok");
    assert!(
        !env.daemon_log().contains("hunter2"),
        "the proxy password is never logged"
    );
    assert!(!report.to_string().contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_proxy_with_a_credentials_file_and_a_direct_account() {
    let mut env = Env::new(&[]).await;
    let port = env.mock_port();
    let proxy = TestProxy::start(Kind::Http, Some(("Basic Ym9iOmh1bnRlcjI=", "")), &[]).await;
    let credentials = env.dir.path().join("proxy-credentials");
    std::fs::write(&credentials, "bob:hunter2\n").unwrap();
    write_config(
        &env,
        "",
        &format!("url = \"ws://127.0.0.1:{port}/ws/chat\""),
        &format!(
            "[[account]]\nname = \"proxied\"\npair_on_start = true\nproxy = \"http://{}\"\n\
             proxy_credentials_file = {:?}\n\n\
             [[account]]\nname = \"direct\"\npair_on_start = true\n",
            proxy.addr, credentials
        ),
    );
    env.start_daemon().await;
    env.wait_state("proxied", "waiting_for_pairing", CONNECT)
        .await;
    env.wait_state("direct", "waiting_for_pairing", CONNECT)
        .await;
    let granted = proxy.granted();
    assert!(!granted.is_empty(), "proxied went through the proxy");
    assert!(
        granted
            .iter()
            .all(|t| t.target == format!("127.0.0.1:{port}"))
    );
    // The direct account's connections reached the mock without the proxy:
    // more connections at the mock than tunnels through the proxy.
    assert!(
        env.mock.stats().connection_attempts > proxy.seen().len() as u64,
        "direct dials directly"
    );
    assert!(!env.daemon_log().contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_proxy_fails_with_a_clear_reason() {
    let mut env = Env::new(&[]).await;
    let port = env.mock_port();
    let proxy = TestProxy::start(Kind::Socks5, Some(("bob", "hunter2")), &[]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    write_config(
        &env,
        "",
        &format!("url = \"ws://127.0.0.1:{port}/ws/chat\""),
        &format!(
            "[[account]]\nname = \"badpass\"\npair_on_start = true\nproxy = \"socks5://bob:wrong@{}\"\n\n\
             [[account]]\nname = \"noproxy\"\npair_on_start = true\nproxy = \"socks5://{closed}\"\n",
            proxy.addr
        ),
    );
    env.start_daemon().await;
    for (account, reason) in [
        ("badpass", "rejected the username/password"),
        ("noproxy", "cannot reach the proxy"),
    ] {
        let s = eventually(
            CONNECT,
            &format!("{account} explains its failure"),
            || async {
                let s = env.status(account).await;
                (s["state"] == "reconnecting"
                    && s["health"]["reasons"].to_string().contains(reason))
                .then_some(s)
            },
        )
        .await;
        assert_eq!(s["health"]["level"], "degraded", "{s}");
        let (code, report) = walink_json(&env, &["diagnose", account]).await;
        assert_eq!(code, Some(1));
        assert!(
            report["verdict"]
                .as_str()
                .unwrap()
                .starts_with("proxy failed"),
            "{report:#}"
        );
    }
    assert_eq!(
        env.mock.stats().connection_attempts,
        0,
        "nothing got past the proxies"
    );
    assert!(proxy.seen().iter().all(|s| !s.granted));
    assert!(
        !env.daemon_log().contains("wrong@"),
        "no credentials in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_family_ipv4_dials_ipv4_only() {
    let mut env = Env::new(&[]).await;
    let port = env.mock_port();
    write_config(
        &env,
        "",
        &format!("url = \"ws://localhost:{port}/ws/chat\"\nip_family = \"ipv4\""),
        "[[account]]\nname = \"v4\"\npair_on_start = true\n",
    );
    env.start_daemon().await;
    env.wait_state("v4", "waiting_for_pairing", CONNECT).await;
    let (code, report) = walink_json(&env, &["diagnose", "v4"]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ip_family"], "ipv4");
    let v6 = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "tcp_ipv6")
        .unwrap()
        .clone();
    assert_eq!(v6["status"], "skipped");
    assert!(v6["detail"].as_str().unwrap().contains("ip_family"), "{v6}");

    // An IPv6-only policy against an IPv4-only server says why it cannot dial.
    let mut v6_only = settings(&format!("ws://127.0.0.1:{port}/ws/chat"));
    v6_only.ip_family = IpFamily::Ipv6;
    let report = diagnose(&v6_only, None).await;
    assert_eq!(step(&report, "tcp_ipv4").status, StepStatus::Skipped);
    assert_fails_at(&report, "tcp_ipv6", "no AAAA record");
    let dialer = v6_only.dialer();
    let err = dialer.connect("127.0.0.1", port).await.unwrap_err();
    assert!(err.to_string().contains("no IPv6 address"), "{err}");
}

/// GETs `path` from the metrics listener; returns (status line, body).
async fn scrape(addr: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

fn sample(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_what_the_mock_does() {
    let mut env = Env::new(&[]).await;
    write_config(
        &env,
        "metrics_listen = \"127.0.0.1:0\"",
        &format!("url = {:?}", env.mock.ws_url()),
        "[[account]]\nname = \"sales\"\n",
    );
    env.start_daemon().await;
    let addr = eventually(CONNECT, "the metrics address in the log", || async {
        let log = env.daemon_log();
        let at = log.find("serving Prometheus metrics at http://")?;
        let rest = &log[at + "serving Prometheus metrics at http://".len()..];
        Some(rest.split('/').next()?.to_owned())
    })
    .await;
    let (status, body) = scrape(&addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        sample(&body, "walink_account_connected{account=\"sales\"}"),
        Some(0.0)
    );
    assert!(body.contains("# TYPE walink_account_reconnects_total counter"));
    assert_eq!(
        sample(&body, "walink_last_backup_age_seconds{account=\"sales\"}"),
        None,
        "no backup before pairing"
    );
    assert_eq!(scrape(&addr, "/").await.0, "HTTP/1.1 404 Not Found");

    env.pair("sales").await;
    env.wait_state("sales", "connected", CONNECT).await;
    let (_, body) = scrape(&addr, "/metrics").await;
    assert_eq!(
        sample(&body, "walink_account_connected{account=\"sales\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "walink_account_state{account=\"sales\",state=\"connected\"}"
        ),
        Some(1.0)
    );
    assert!(sample(&body, "walink_store_size_bytes{account=\"sales\"}").unwrap() > 0.0);
    // A backup is taken right after pairing: its age is now known.
    let body = eventually(CONNECT, "the backup age", || async {
        let (_, body) = scrape(&addr, "/metrics").await;
        sample(&body, "walink_last_backup_age_seconds{account=\"sales\"}").map(|_| body)
    })
    .await;
    assert!(sample(&body, "walink_last_backup_age_seconds{account=\"sales\"}").unwrap() < 3600.0);

    // A message each way, and a dropped connection.
    let out = env.walink(&["send", "sales", CONTACT_JID, "hello"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jid = env.jid("sales").await;
    let phone = jid.split([':', '@']).next().unwrap().to_string();
    env.mock
        .deliver(CONTACT, &phone, "hi back", None)
        .await
        .unwrap();
    env.mock.fault(&jid, Fault::Eof);
    let body = eventually(CONNECT, "the metrics moved", || async {
        let (_, body) = scrape(&addr, "/metrics").await;
        let reconnected =
            sample(&body, "walink_account_reconnects_total{account=\"sales\"}") == Some(1.0);
        let connected = sample(&body, "walink_account_connected{account=\"sales\"}") == Some(1.0);
        let received =
            sample(&body, "walink_messages_received_total{account=\"sales\"}") == Some(1.0);
        (reconnected && connected && received).then_some(body)
    })
    .await;
    assert_eq!(
        sample(&body, "walink_messages_sent_total{account=\"sales\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "walink_outbox_messages{account=\"sales\",status=\"queued\"}"
        ),
        Some(0.0)
    );
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(CONNECT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("read")
        .expect("walink still running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_prints_plain_lines_that_follow_the_connection() {
    let mut env = Env::new(&[]).await;
    write_config(
        &env,
        "",
        &format!("url = {:?}", env.mock.ws_url()),
        "[[account]]\nname = \"sales\"\npair_on_start = true\n",
    );
    env.start_daemon().await;
    env.wait_state("sales", "waiting_for_pairing", CONNECT)
        .await;

    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_walink"))
        .arg("--socket")
        .arg(env.socket())
        .args(["status", "--watch", "--interval", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn walink status --watch");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = next_line(&mut lines).await;
    assert!(
        first.contains("sales state=waiting_for_pairing health=degraded"),
        "{first}"
    );
    assert!(!first.contains('\x1b'), "no escapes when not on a terminal");

    // The mock drops the connection: the line changes, with the event.
    assert_eq!(env.mock.fault("all", Fault::Close), 1);
    let changed = loop {
        let line = next_line(&mut lines).await;
        if line.contains("connecting") {
            break line;
        }
    };
    assert!(
        changed.starts_with("20"),
        "each line is timestamped: {changed}"
    );
    assert!(changed.contains(" sales state="), "{changed}");

    // `q` on stdin quits cleanly.
    let mut stdin = watch.stdin.take().unwrap();
    stdin.write_all(b"q\n").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), watch.wait())
        .await
        .expect("walink exits on q")
        .unwrap();
    assert!(status.success(), "{status}");
}
