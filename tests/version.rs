//! The WhatsApp Web version and walink's own HTTP client: the version page
//! is fetched through the account's proxy and nowhere else, a page that is
//! down never blocks or delays a connect (the stored version, else the
//! built-in one), and `walink qr` says why it has no code to show.
//!
//! Unlike the other end-to-end tests these configs pin no
//! `connection.client_version`: walinkd is pointed at a stand-in version
//! page on loopback (`tests/harness/version_page.rs`) through
//! `WALINK_TEST_HOSTS`, honoured only by debug builds.

mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use harness::proxy::{Kind, TestProxy};
use harness::version_page::{REVISION, VersionPage};
use harness::{CLIENT_VERSION, Env, eventually};
use mock_wa::Fault;

const CONNECT: Duration = Duration::from_secs(40);
/// What walink announces before any fetch worked (wa/version.rs).
const BUILT_IN: &str = "2.3000.1042742319";

/// A config with no pinned version; `connection` and `accounts` are raw TOML.
fn write_config(env: &Env, connection: &str, accounts: &str) {
    env.write_raw_config(
        "",
        &format!("connect_timeout_secs = 3\n{connection}"),
        accounts,
    );
}

fn point_version_page_at(env: &mut Env, target: &str) {
    env.daemon_env.retain(|(k, _)| k != "WALINK_TEST_HOSTS");
    env.daemon_env.push((
        "WALINK_TEST_HOSTS".into(),
        format!("web.whatsapp.com={target}"),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_page_and_the_websocket_go_only_through_the_proxy() {
    let mut env = Env::new(&[]).await;
    let page = VersionPage::start().await;
    let mock: SocketAddr = format!("127.0.0.1:{}", env.mock_port()).parse().unwrap();
    // `.test` names never resolve locally: only the proxy knows them, so
    // neither the WebSocket nor the version page has a direct route.
    let proxy = TestProxy::start(
        Kind::Socks5,
        None,
        &[("mock-wa.test", mock), ("sw.test", page.addr)],
    )
    .await;
    point_version_page_at(&mut env, &format!("sw.test:{}", page.addr.port()));
    // The library at debug level, node dumps included: what must still
    // never show is the pairing material.
    env.daemon_env.push(("RUST_LOG".into(), "debug".into()));
    write_config(
        &env,
        &format!(
            "url = \"ws://mock-wa.test:{}/ws/chat\"\nproxy = \"socks5://{}\"",
            mock.port(),
            proxy.addr
        ),
        "[[account]]\nname = \"sales\"\n",
    );
    env.start_daemon().await;

    let (_, code) = env.pair_showing("sales").await;
    let status = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(
        status["version"]["version"],
        format!("2.3000.{REVISION}"),
        "{status}"
    );
    assert_eq!(status["version"]["source"], "fetched", "{status}");
    assert!(page.served() >= 1, "the version page was fetched");
    let page_target = format!("sw.test:{}", page.addr.port());
    let granted = proxy.granted();
    assert!(
        granted.iter().any(|t| t.target == page_target),
        "the version fetch went through the proxy: {granted:?}"
    );
    assert!(
        granted
            .iter()
            .all(|t| t.target == page_target || t.target == format!("mock-wa.test:{}", mock.port())),
        "nothing else was asked of the proxy: {granted:?}"
    );

    // The fetch is diagnose's `http` step, through the same path.
    let out = env.walink(&["diagnose", "sales", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let http = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "http")
        .cloned()
        .unwrap();
    assert_eq!(http["status"], "ok", "{report:#}");
    assert!(
        http["detail"]
            .as_str()
            .unwrap()
            .contains(&REVISION.to_string()),
        "{http}"
    );

    let log = env.daemon_log();
    assert!(
        log.contains("Client/Recv") || log.contains("DEBUG"),
        "debug lines were logged"
    );
    let reference = code.rsplit('#').next().unwrap().split(',').next().unwrap();
    assert!(reference.len() > 8, "a QR ref: {reference}");
    assert!(!log.contains(reference), "the QR ref never reaches the log");
    assert!(!log.contains("pair-device"), "no pairing node dumps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_page_that_is_down_never_blocks_a_connect() {
    let mut env = Env::new(&[]).await;
    let page = VersionPage::start().await;
    let url = env.mock.ws_url().to_owned();
    point_version_page_at(&mut env, &page.addr.to_string());
    write_config(
        &env,
        &format!("url = {url:?}"),
        "[[account]]\nname = \"kept\"\n",
    );
    env.start_daemon().await;
    env.pair("kept").await;
    let status = env.wait_state("kept", "connected", CONNECT).await;
    assert_eq!(status["version"]["source"], "fetched", "{status}");
    env.stop_daemon(libc::SIGTERM).await;

    // The page goes away; a second account has never had a version.
    let down = VersionPage::unreachable();
    point_version_page_at(&mut env, &down.to_string());
    write_config(
        &env,
        &format!("url = {url:?}"),
        "[[account]]\nname = \"kept\"\n\n[[account]]\nname = \"fresh\"\n",
    );
    env.start_daemon().await;
    let status = eventually(
        CONNECT,
        "kept connects and names the failed fetch",
        || async {
            let s = env.status("kept").await;
            (s["state"] == "connected" && !s["version"]["fetch_error"].is_null()).then_some(s)
        },
    )
    .await;
    assert_eq!(
        status["version"]["version"],
        format!("2.3000.{REVISION}"),
        "{status}"
    );
    let error = status["version"]["fetch_error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "could not fetch the WhatsApp Web version from web.whatsapp.com directly:"
        ),
        "{error}"
    );
    assert!(error.contains("refused"), "{error}");
    assert_eq!(status["reconnect_attempts"], 0, "{status}");

    // A routine recycle reconnects at once: no failed attempt, no backoff,
    // and no new fetch (the failure is retried later, not at every connect).
    let jid = env.jid("kept").await;
    let before = status["automatic_reconnections"].as_u64().unwrap();
    env.mock.fault(&jid, Fault::Eof);
    let status = eventually(CONNECT, "kept reconnects after EOF", || async {
        let s = env.status("kept").await;
        (s["state"] == "connected" && s["automatic_reconnections"].as_u64() == Some(before + 1))
            .then_some(s)
    })
    .await;
    assert_eq!(status["reconnect_attempts"], 0, "{status}");
    assert_eq!(status["next_retry_at"], serde_json::Value::Null);
    assert_eq!(
        status["last_disconnect"]["reason"], "server recycled the connection",
        "{status}"
    );

    env.pair("fresh").await;
    let status = env.wait_state("fresh", "connected", CONNECT).await;
    assert_eq!(status["version"]["version"], BUILT_IN, "{status}");
    assert_eq!(status["version"]["source"], "built_in", "{status}");
    assert!(
        status["version"]["fetch_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{status}"
    );
    let out = env.walink(&["status", "fresh"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("built into walink"), "{text}");

    let log = env.daemon_log();
    for account in ["kept", "fresh"] {
        let warnings = log
            .lines()
            .filter(|l| l.contains(&format!("account={account}")))
            .filter(|l| l.contains("could not fetch the WhatsApp Web version"))
            .filter(|l| l.contains("trying again later"))
            .count();
        assert_eq!(warnings, 1, "{account}: the failure is logged once\n{log}");
    }
    assert!(
        !log.contains("Will retry"),
        "the library's retry error is not in the log"
    );
}

/// walinkd with one unlinked account `sales` whose server refuses connections.
async fn unreachable_sales() -> Env {
    let mut env = Env::new(&[]).await;
    let closed = VersionPage::unreachable();
    env.write_raw_config(
        "",
        &format!("url = \"ws://{closed}/ws/chat\"\nclient_version = {CLIENT_VERSION:?}"),
        "[[account]]\nname = \"sales\"\n",
    );
    env.start_daemon().await;
    env
}

/// Checks that a `qr`/`pair-code` run gave up (exit 3) after printing the
/// account's state and reason; returns its stderr.
fn gave_up_saying_why(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("sales: reconnecting: could not connect:"),
        "the state and reason while waiting: {stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_says_why_there_is_no_code_and_gives_up_after_its_timeout() {
    let env = unreachable_sales().await;

    let out = env.walink(&["qr", "sales", "--timeout", "3"]).await;
    let stderr = gave_up_saying_why(&out);
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(stderr.contains("not linked after 3s"), "{stderr}");
    assert!(out.stdout.is_empty(), "no QR was shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_says_why_there_is_no_code_and_gives_up_after_its_timeout() {
    let env = unreachable_sales().await;

    let out = env
        .walink(&["pair-code", "sales", "+15551112222", "--timeout", "3"])
        .await;
    let stderr = gave_up_saying_why(&out);
    assert!(stderr.contains("no pair code yet"), "{stderr}");
    assert!(stderr.contains("not linked after 3s"), "{stderr}");
    assert!(out.stdout.is_empty(), "no code was shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_fails_after_the_dial_says_why() {
    // Upgrades to a WebSocket, then hangs up before the Noise hello: the
    // dial worked, the library's handshake did not.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                let _ = ws.close(None).await;
            }
        }
    });
    let mut env = Env::new(&[]).await;
    env.write_raw_config(
        "",
        &format!("url = \"ws://{addr}/ws/chat\"\nclient_version = {CLIENT_VERSION:?}"),
        "[[account]]\nname = \"sales\"\npair_on_start = true\n",
    );
    env.start_daemon().await;
    let status = eventually(CONNECT, "a reason past `could not connect`", || async {
        let s = env.status("sales").await;
        let reason = s["health"]["reasons"].to_string();
        (s["state"] == "reconnecting" && reason.contains("could not connect: ")).then_some(s)
    })
    .await;
    let reasons = status["health"]["reasons"].to_string();
    assert!(!reasons.contains("Will retry"), "{reasons}");
    assert!(
        !env.daemon_log().contains("Will retry"),
        "the library's retry error stays out of the log"
    );
    server.abort();
}
