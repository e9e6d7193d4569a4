//! End to end: real walinkd and walink binaries, real sled files, a real
//! Unix socket, and mock-wa speaking the WhatsApp Web protocol on loopback.

mod harness;

use std::time::Duration;

use harness::{Env, eventually, raw_exchange, stays};
use mock_wa::Fault;
use serde_json::json;

const CONNECT: Duration = Duration::from_secs(40);

async fn paired(accounts: &[&str]) -> Env {
    Env::paired(accounts, CONNECT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_once_and_restarts_never_ask_for_a_qr_again() {
    let mut env = Env::new(&["sales"]).await;
    env.start_daemon().await;
    let jid = env.pair("sales").await;

    let out = env.walink(&["status", "--json"]).await;
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    let sales = &status["accounts"][0];
    assert_eq!(sales["name"], "sales");
    assert_eq!(sales["jid"], jid.as_str());
    env.wait_state("sales", "connected", CONNECT).await;

    for (how, signal) in [("SIGTERM", libc::SIGTERM), ("kill -9", libc::SIGKILL)] {
        let before = env.mock.stats();
        let exit = env.stop_daemon(signal).await;
        if signal == libc::SIGTERM {
            assert!(exit.success(), "clean exit on SIGTERM: {exit}");
        }
        env.start_daemon().await;
        let s = env.wait_state("sales", "connected", CONNECT).await;
        assert_eq!(s["jid"], jid.as_str(), "same identity after {how}");
        let after = env.mock.stats();
        assert_eq!(after.pairings, 1, "no new pairing after {how}");
        assert!(
            after.handshakes_ik > before.handshakes_ik,
            "logged in with the stored key (Noise IK) after {how}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reaches_the_contact_exactly_once() {
    let env = paired(&["sales"]).await;
    let out = env
        .walink(&["send", "sales", "+15551234567", "order shipped"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(id.starts_with("3EB0"), "prints the message id: {id}");

    let messaging = env.mock.messaging().expect("mock has messaging");
    let inbox = eventually(Duration::from_secs(10), "the contact's inbox", || async {
        let inbox = messaging.inbox("15551234567").await;
        (!inbox.is_empty()).then_some(inbox)
    })
    .await;
    assert_eq!(inbox.len(), 1, "exactly once: {inbox:?}");
    assert_eq!(inbox[0].text, "order shipped");
    assert_eq!(inbox[0].id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routine_recycles_and_restart_required_reconnect_at_once() {
    let env = paired(&["sales"]).await;
    let jid = env.jid("sales").await;
    let cases = [
        (Fault::Close, "server recycled the connection"),
        (Fault::Eof, "server recycled the connection"),
        (Fault::StreamError(515), "server asked for a restart (515)"),
    ];
    for (n, (fault, reason)) in cases.into_iter().enumerate() {
        let attempts = env.mock.stats().connection_attempts;
        assert_eq!(
            env.mock.fault(&jid, fault),
            1,
            "{fault:?} hit the connection"
        );
        let reconnections = n as u64 + 1;
        let s = eventually(CONNECT, &format!("reconnected after {fault:?}"), || async {
            let s = env.status("sales").await;
            (s["state"] == "connected" && s["automatic_reconnections"] == reconnections)
                .then_some(s)
        })
        .await;
        assert_eq!(s["last_disconnect"]["reason"], reason);
        assert_eq!(s["reconnect_attempts"], 0, "no failed attempt, no backoff");
        assert_eq!(s["next_retry_at"], serde_json::Value::Null);
        assert_eq!(
            env.mock.stats().connection_attempts,
            attempts + 1,
            "one new connection for {fault:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_401_stops_and_forgets_the_credentials() {
    let env = paired(&["sales"]).await;
    let jid = env.jid("sales").await;
    env.mock.fault(&jid, Fault::StreamError(401));
    let s = env.wait_state("sales", "logged_out", CONNECT).await;
    assert_eq!(s["session"]["exists"], false, "credentials removed");
    assert_eq!(s["health"]["level"], "critical");
    assert_eq!(s["recommendations"]["needs_pairing"], true);
    // No QR can be shown until the account is initialized again: `qr`
    // says so and what to run, instead of waiting.
    let out = env.walink(&["qr", "sales"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("logged_out"), "{stderr}");
    assert!(stderr.contains("walink initialize sales"), "{stderr}");
    let attempts = env.mock.stats().connection_attempts;
    stays(
        Duration::from_secs(30),
        "no connection attempt after 401",
        || async { env.mock.stats().connection_attempts == attempts },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_440_stops_until_told_to_reconnect() {
    let env = paired(&["sales"]).await;
    let jid = env.jid("sales").await;
    env.mock.fault(&jid, Fault::StreamError(440));
    let s = env.wait_state("sales", "replaced", CONNECT).await;
    assert_eq!(s["session"]["exists"], true, "credentials kept");
    let attempts = env.mock.stats().connection_attempts;
    stays(Duration::from_secs(10), "no retry after 440", || async {
        env.mock.stats().connection_attempts == attempts
    })
    .await;
    let out = env.walink(&["reconnect", "sales"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["jid"], jid.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_follow_the_backoff_schedule() {
    let mut env =
        Env::with_connection(&["sales"], "backoff_secs = [1, 2, 4]\njitter = 0.0\n").await;
    env.start_daemon().await;
    env.pair("sales").await;
    let s = env.wait_state("sales", "connected", CONNECT).await;
    let jid = s["jid"].as_str().unwrap().to_string();

    let mut events = walink::ipc::Client::connect(&env.socket()).await.unwrap();
    let mut stream = events
        .stream("subscribe", json!({ "account": "sales" }))
        .await
        .unwrap();
    env.mock.refuse(6);
    env.mock.fault(&jid, Fault::Close);

    // Each failed attempt announces the next one with its delay.
    let mut delays = Vec::new();
    while delays.len() < 3 {
        let item = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("an event within 30 s")
            .unwrap()
            .expect("stream open");
        let walink::ipc::StreamItem::Notification(n) = item else {
            continue;
        };
        let p = &n.params;
        if p["kind"] == "state_changed"
            && p["state"] == "reconnecting"
            && !p["next_retry_at"].is_null()
        {
            let attempt = p["attempt"].as_u64().unwrap();
            let delay = p["next_retry_at"].as_u64().unwrap() - p["at"].as_u64().unwrap();
            delays.push((attempt, delay));
        }
    }
    for ((attempt, delay), (want_attempt, want)) in delays.iter().zip([(1, 1), (2, 2), (3, 4)]) {
        assert_eq!(*attempt, want_attempt, "{delays:?}");
        assert!(
            delay.abs_diff(want) <= 1,
            "attempt {attempt} waits ~{want}s: {delays:?}"
        );
    }
    assert!(env.mock.stats().connections_refused >= 2);
    let s = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(s["reconnect_attempts"], 0);
    assert_eq!(s["jid"], jid.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_daemon_keeps_serving() {
    let mut env = Env::new(&["sales"]).await;
    env.start_daemon().await;
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"status","params":{{"pad":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let replies = raw_exchange(
        &env.socket(),
        &[
            br#"{"jsonrpc":"2.0","id":1,"method":"status","params":{"account":"nope"}}"#,
            br#"{"jsonrpc":"2.0","id":2,"method":"send","params":{"account":"sales","to":"12ab","text":"hi"}}"#,
            br#"{"jsonrpc":"2.0","id":3,"method":"send","params":{"account":"sales","to":"+15551234567","text":"  "}}"#,
            long.as_bytes(),
            b"{not json",
            br#"{"jsonrpc":"2.0","id":6,"method":"frobnicate"}"#,
            br#"{"jsonrpc":"2.0","id":7,"method":"send","params":{"account":"ghost","to":"+15551234567","text":"hi"}}"#,
            br#"{"jsonrpc":"2.0","id":8,"method":"status"}"#,
        ],
    )
    .await;
    let message = |i: usize| {
        replies[i]["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        message(0).contains("unknown account \"nope\""),
        "{}",
        replies[0]
    );
    assert!(
        message(0).contains("sales"),
        "lists the configured accounts"
    );
    assert!(message(1).contains("invalid recipient"), "{}", replies[1]);
    assert!(message(2).contains("empty"), "{}", replies[2]);
    assert_eq!(replies[3]["error"]["code"], -32600, "{}", replies[3]);
    assert_eq!(replies[4]["error"]["code"], -32700, "{}", replies[4]);
    assert_eq!(replies[5]["error"]["code"], -32601, "{}", replies[5]);
    assert!(
        message(6).contains("unknown account \"ghost\""),
        "{}",
        replies[6]
    );
    assert_eq!(
        replies[7]["result"]["accounts"][0]["name"], "sales",
        "still serving"
    );

    // A send to an account that is not connected says so.
    let err = env
        .call(
            "send",
            json!({"account": "sales", "to": "+15551234567", "text": "hi"}),
        )
        .await
        .unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("not connected"),
        "{err}"
    );
    let exit = env.stop_daemon(libc::SIGTERM).await;
    assert!(exit.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_one_account_never_disturb_another() {
    let env = paired(&["sales", "support"]).await;
    let sales = env.jid("sales").await;
    let support_before = env.status("support").await;
    assert_ne!(sales, support_before["jid"].as_str().unwrap());

    env.mock.fault(&sales, Fault::Close);
    eventually(CONNECT, "sales reconnected", || async {
        let s = env.status("sales").await;
        (s["state"] == "connected" && s["automatic_reconnections"] == 1).then_some(())
    })
    .await;
    env.mock.fault(&sales, Fault::StreamError(440));
    env.wait_state("sales", "replaced", CONNECT).await;

    let support = env.status("support").await;
    assert_eq!(support["state"], "connected");
    assert_eq!(
        support["connected_since"],
        support_before["connected_since"]
    );
    assert_eq!(support["automatic_reconnections"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_mode_needs_no_config_and_keeps_its_state_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    let state_home = dir.path().join("state");
    let config_home = dir.path().join("config");
    std::fs::create_dir_all(&runtime).unwrap();
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_walinkd"))
        .arg("--user")
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("XDG_STATE_HOME", &state_home)
        .env("XDG_CONFIG_HOME", &config_home)
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let socket = runtime.join("walink/walink.sock");
    let out = eventually(
        Duration::from_secs(20),
        "walink status in user mode",
        || async {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walink"))
                .args(["status", "--json"])
                .env("XDG_RUNTIME_DIR", &runtime)
                .env_remove("WALINK_SOCKET")
                .output()
                .await
                .unwrap();
            out.status.success().then_some(out)
        },
    )
    .await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["accounts"], json!([]), "no config, no account");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o660, "socket is 0660");
    assert_eq!(
        mode(&state_home.join("walink")),
        0o700,
        "state dir is private"
    );
    assert_eq!(
        mode(&state_home.join("walink/state")),
        0o700,
        "database is private"
    );
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(daemon.id().unwrap() as i32, libc::SIGTERM) };
    assert!(daemon.wait().await.unwrap().success());
    assert!(!socket.exists(), "the socket it bound is removed on exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_named_precisely_and_touches_nothing() {
    let env = Env::new(&["sales"]).await;
    let config = env.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[connection]\n", "[connection]\njitter = 1.5\n"),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walinkd"))
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "walinkd refuses a bad config");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().position(|l| l == "[connection]").unwrap() + 2;
    assert!(
        err.contains(&format!(
            "{}:{line}: connection.jitter = 1.5: must be between 0.0 and 0.9",
            config.display()
        )),
        "names file, line, key and what is allowed: {err}"
    );
    assert!(!env.state_dir().exists(), "no state created");
    assert!(!env.socket().exists(), "no socket bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_links_the_account_when_the_phone_takes_the_code() {
    let mut env = Env::new(&["sales"]).await;
    // Every library line at debug, node dumps included: the code and the
    // pairing refs must still stay out of the log.
    env.daemon_env.push(("RUST_LOG".into(), "debug".into()));
    env.start_daemon().await;
    let out = env.walink(&["initialize", "sales"]).await;
    assert!(out.status.success(), "walink initialize failed");
    env.wait_state("sales", "waiting_for_pairing", CONNECT)
        .await;
    let out = env.walink(&["pair-code", "sales", "+1 555 111 2222"]).await;
    assert!(
        out.status.success(),
        "walink pair-code failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let code = stdout.lines().next().expect("the code first").trim();
    assert_eq!(code.len(), 8, "an 8-character code: {stdout}");

    let jid = env
        .mock
        .enter_pair_code("15551112222", code)
        .await
        .expect("the phone takes the code walink printed");
    assert_eq!(jid, "15551112222:1@s.whatsapp.net");
    let status = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(status["jid"], jid.as_str());
    assert_eq!(env.mock.stats().pairings, 1);
    let log = env.daemon_log();
    assert!(
        log.contains("<iq "),
        "the library's node dumps are logged at debug"
    );
    assert!(!log.contains(code), "the pair code is not in the log");
    assert!(!log.contains("pair-device"), "no pairing ref is in the log");

    env.stop_daemon(libc::SIGTERM).await;
    env.start_daemon().await;
    let status = env.wait_state("sales", "connected", CONNECT).await;
    assert_eq!(
        status["jid"],
        jid.as_str(),
        "the same device after a restart"
    );
    assert_eq!(env.mock.stats().pairings, 1, "no second pairing");
}

/// walinkd's `Max open files` soft and hard limits, from /proc.
fn open_files_limit(env: &Env) -> (String, String) {
    let pid = env.daemon.as_ref().unwrap().id().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_string(),
        fields.next().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_descriptor_limit_is_raised_or_named_at_start() {
    // Three accounts need 256 + 3 × 4 = 268 descriptors.
    let mut env = Env::new(&["a", "b", "c"]).await;
    env.daemon_nofile = Some((200, 4096));
    env.start_daemon().await;
    assert_eq!(
        open_files_limit(&env),
        ("4096".into(), "4096".into()),
        "the soft limit is raised to the hard one"
    );
    assert!(
        env.daemon_log()
            .contains("raised the file-descriptor limit from 200 to 4096 for 3 accounts"),
        "{}",
        env.daemon_log()
    );
    env.stop_daemon(libc::SIGTERM).await;

    env.daemon_nofile = Some((200, 200));
    env.start_daemon().await;
    let log = env.daemon_log();
    assert!(
        log.contains("3 accounts need about 268 file descriptors but walinkd may open only 200")
            && log.contains("set LimitNOFILE=1000 in the unit"),
        "{log}"
    );
    assert_eq!(open_files_limit(&env), ("200".into(), "200".into()));
    let status = env.call("status", json!({})).await.expect("still serving");
    assert_eq!(status["accounts"].as_array().unwrap().len(), 3);
}

/// Every account of `env` connected, per `status`.
async fn all_connected(env: &Env, names: &[&str]) {
    eventually(CONNECT, "every account connected", || async {
        let status = env.call("status", json!({})).await.ok()?;
        let accounts = status["accounts"].as_array()?;
        (accounts.len() == names.len() && accounts.iter().all(|a| a["state"] == "connected"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_drop_and_a_cold_start_reconnect_everyone_through_the_handshake_gate() {
    let names = ["a", "b", "c", "d", "e", "f"];
    let mut env = Env::with_connection(&names, "max_concurrent_handshakes = 2\n").await;
    env.start_daemon().await;
    for name in names {
        env.pair(name).await;
    }
    all_connected(&env, &names).await;

    let before = env.mock.stats().logins;
    env.mock.state().stats.reset_handshake_peak();
    assert!(env.mock.fault("all", Fault::Eof) >= names.len());
    env.mock
        .wait_for(CONNECT, |s| s.logins >= before + names.len() as u64)
        .await
        .expect("every account logs in again after the mass drop");
    all_connected(&env, &names).await;
    let peak = env.mock.stats().handshakes_in_flight_peak;
    assert!(
        (1..=2).contains(&peak),
        "at most 2 handshakes at once after the mass drop, saw {peak}"
    );

    env.stop_daemon(libc::SIGTERM).await;
    env.mock.state().stats.reset_handshake_peak();
    env.start_daemon().await;
    all_connected(&env, &names).await;
    let peak = env.mock.stats().handshakes_in_flight_peak;
    assert!(
        (1..=2).contains(&peak),
        "at most 2 handshakes at once at a cold start, saw {peak}"
    );
}
