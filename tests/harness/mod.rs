//! Harness for end-to-end tests: the real `walinkd` and `walink` binaries,
//! real sled files in a temp dir, a real Unix socket, and mock-wa speaking the
//! WhatsApp Web protocol on loopback, in the test process.

#![allow(dead_code)]

pub mod proxy;
pub mod version_page;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mock_wa::messaging::MessagingConfig;
use mock_wa::{MockConfig, MockHandle, MockServer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A version so the daemon never asks web.whatsapp.com for one.
pub const CLIENT_VERSION: &str = "2.3000.1023456789";

pub struct Env {
    pub dir: TempDir,
    pub mock: MockHandle,
    pub daemon: Option<Child>,
    /// Extra environment for walinkd. By default `WALINK_TEST_HOSTS` sends
    /// what the server names as media host (`127.0.0.1:PORT`, dialed as
    /// `https://127.0.0.1:PORT/…`) to the mock's plain-HTTP media listener.
    pub daemon_env: Vec<(String, String)>,
    /// `RLIMIT_NOFILE` (soft, hard) walinkd starts with, when set.
    pub daemon_nofile: Option<(u64, u64)>,
}

/// Polls `probe` until it returns `Some`, or panics with `what` at `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_until(timeout, || {
        let next = probe();
        async move { next.await.ok_or(()) }
    })
    .await
    .unwrap_or_else(|()| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// How often [`poll_until`] asks again. The probes read state walinkd and
/// the mock expose (status, the outbox, the inbox), which no event
/// announces to the test; the deadline, not this pause, bounds the wait.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `probe` until it returns `Ok`; at `timeout`, returns its last
/// `Err`, so the caller can say what was still missing.
pub async fn poll_until<T, E, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}

impl Env {
    pub async fn new(accounts: &[&str]) -> Env {
        Self::with_connection(accounts, "").await
    }

    /// `connection` is extra TOML for the `[connection]` table.
    pub async fn with_connection(accounts: &[&str], connection: &str) -> Env {
        Self::with_mock(accounts, connection, MessagingConfig::default()).await
    }

    /// With the mock's contacts behaving as `messaging` says.
    pub async fn with_mock(accounts: &[&str], connection: &str, messaging: MessagingConfig) -> Env {
        let mock = MockServer::start_with_messaging(MockConfig::default(), messaging)
            .await
            .expect("mock-wa starts");
        let media_hosts = format!("127.0.0.1={}", mock.media_host());
        let env = Env {
            dir: tempfile::tempdir().expect("temp dir"),
            mock,
            daemon: None,
            daemon_env: vec![("WALINK_TEST_HOSTS".into(), media_hosts)],
            daemon_nofile: None,
        };
        env.write_config(accounts, connection);
        env
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("walink.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("walink.toml")
    }

    pub fn write_config(&self, accounts: &[&str], connection: &str) {
        let mut text = format!(
            "[daemon]\nsocket = {:?}\nstate_dir = {:?}\nlog_target = \"stderr\"\n\n\
             [connection]\nurl = {:?}\nclient_version = {CLIENT_VERSION:?}\n{connection}\n",
            self.socket(),
            self.state_dir(),
            self.mock.ws_url(),
        );
        for name in accounts {
            text.push_str(&format!("\n[[account]]\nname = {name:?}\n"));
        }
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// A complete config from raw TOML: extra `[daemon]` keys, the whole
    /// `[connection]` table (no version pinned unless it says so), accounts.
    pub fn write_raw_config(&self, daemon: &str, connection: &str, accounts: &str) {
        let text = format!(
            "[daemon]\nsocket = {:?}\nstate_dir = {:?}\nlog_target = \"stderr\"\n{daemon}\n\n\
             [connection]\n{connection}\n\n{accounts}\n",
            self.socket(),
            self.state_dir(),
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Starts walinkd and waits until its socket answers.
    pub async fn start_daemon(&mut self) {
        self.start_daemon_within(Duration::from_secs(20)).await;
    }

    /// [`Self::start_daemon`], allowing `timeout` for the socket to answer
    /// (the benchmarks start walinkd with a thousand accounts).
    pub async fn start_daemon_within(&mut self, timeout: Duration) {
        assert!(self.daemon.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("walinkd.log"))
            .expect("daemon log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_walinkd"));
        if let Some((soft, hard)) = self.daemon_nofile {
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info,walink=debug")
            // With RUST_BACKTRACE set (as in many shells and CI), anyhow
            // captures a backtrace for every transport error and the
            // library's log symbolizes it, paging in the debug binary's
            // debug info: +170 MiB RSS, which hides real memory growth.
            // Panics still get their backtrace.
            .env("RUST_LIB_BACKTRACE", "0")
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn walinkd");
        self.daemon = Some(child);
        let answered = poll_until(timeout, || async {
            self.call("status", json!({})).await.map(drop)
        })
        .await;
        if let Err(last) = answered {
            panic!(
                "timed out after {timeout:?} waiting for: walinkd answers on its socket \
                 (last answer: {last})\n{}",
                self.why_silent()
            );
        }
    }

    /// What a walinkd that does not answer is doing, for the failure
    /// message: a start that hangs once in many chaos runs leaves nothing
    /// else to go on once the test has killed it. Its log's last lines, each
    /// thread's name and kernel state, and, when gdb is installed, each
    /// thread's stack.
    fn why_silent(&mut self) -> String {
        let Some(child) = self.daemon.as_mut() else {
            return "walinkd is not running".into();
        };
        if let Ok(Some(exit)) = child.try_wait() {
            return format!("walinkd exited: {exit}\nlog:\n{}", self.daemon_log());
        }
        let Some(pid) = child.id() else {
            return "walinkd has no pid".into();
        };
        let log = self.daemon_log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let mut out = String::from("last lines of walinkd.log:\n");
        for line in tail.iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("threads (name, state, wchan):\n");
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let read = |f: &str| {
                    std::fs::read_to_string(task.path().join(f))
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                };
                let state = read("stat")
                    .rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split(' ').next().map(str::to_string))
                    .unwrap_or_default();
                out.push_str(&format!("  {} {state} {}\n", read("comm"), read("wchan")));
            }
        }
        let stacks = std::process::Command::new("gdb")
            .args(["-p", &pid.to_string(), "-batch", "-nx"])
            .args(["-ex", "set pagination off", "-ex", "thread apply all bt 25"])
            .stdin(Stdio::null())
            .output();
        match stacks {
            Ok(o) => out.push_str(&String::from_utf8_lossy(&o.stdout)),
            Err(e) => out.push_str(&format!("(no stacks: gdb: {e})\n")),
        }
        out
    }

    /// Stops walinkd with `signal` (SIGTERM for a clean stop, SIGKILL for a
    /// crash) and waits for it to exit.
    pub async fn stop_daemon(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.daemon.take().expect("daemon running");
        let pid = child.id().expect("pid") as i32;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, signal) };
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("walinkd exits within 30 s")
            .expect("wait for walinkd")
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("walinkd.log")).unwrap_or_default()
    }

    /// One JSON-RPC call over the socket; `Err` carries the error object.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let mut client = walink::ipc::Client::connect(&self.socket())
            .await
            .map_err(|e| json!({ "connect": e.to_string() }))?;
        match client.call(method, params).await {
            Ok(v) => Ok(v),
            Err(walink::ipc::ClientError::Rpc(e)) => Err(serde_json::to_value(e).unwrap()),
            Err(e) => Err(json!({ "client": e.to_string() })),
        }
    }

    /// Runs the real CLI against this daemon.
    pub async fn walink(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_walink"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run walink")
    }

    pub async fn status(&self, account: &str) -> Value {
        let v = self
            .call("status", json!({ "account": account }))
            .await
            .expect("status answers");
        v["accounts"][0].clone()
    }

    /// Waits until the account is in `state`; returns its status.
    pub async fn wait_state(&self, account: &str, state: &str, timeout: Duration) -> Value {
        eventually(timeout, &format!("{account} to be {state}"), || async {
            let s = self.status(account).await;
            (s["state"] == state).then_some(s)
        })
        .await
    }

    /// Pairs `account` the way a user does: `walink qr ACCOUNT --raw`, the
    /// phone scans the first code, and the command exits 0 with the JID.
    pub async fn pair(&self, account: &str) -> String {
        self.pair_showing(account).await.0
    }

    /// [`Self::pair`], returning the JID and the QR payload the phone scanned.
    pub async fn pair_showing(&self, account: &str) -> (String, String) {
        let mut qr = Command::new(env!("CARGO_BIN_EXE_walink"))
            .arg("--socket")
            .arg(self.socket())
            .args(["qr", account, "--raw"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn walink qr");
        let mut lines = BufReader::new(qr.stdout.take().expect("stdout")).lines();
        let code = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("a QR within 20 s")
            .expect("read QR")
            .expect("walink qr printed a QR");
        let jid = self.mock.scan(&code).await.expect("the phone scans the QR");
        let mut last = String::new();
        while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(40), lines.next_line())
            .await
            .expect("walink qr finishes within 40 s")
        {
            last = line;
        }
        let status = qr.wait().await.expect("walink qr exits");
        assert!(status.success(), "walink qr failed: {status}");
        assert_eq!(last, jid, "walink qr prints the linked JID last");
        (jid, code)
    }

    /// The port mock-wa listens on.
    pub fn mock_port(&self) -> u16 {
        self.mock
            .ws_url()
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("mock-wa's URL names a port")
    }

    /// The device JID the account is linked as, from status.
    pub async fn jid(&self, account: &str) -> String {
        self.status(account).await["jid"]
            .as_str()
            .expect("account has a JID")
            .to_string()
    }

    /// A running daemon with each of `accounts` paired and connected
    /// within `connect`, as a user leaves it after `walink qr`.
    pub async fn paired(accounts: &[&str], connect: Duration) -> Env {
        Self::paired_in(Env::new(accounts).await, accounts, connect).await
    }

    /// `env`, started, with `accounts` paired and connected.
    pub async fn paired_in(mut env: Env, accounts: &[&str], connect: Duration) -> Env {
        env.start_daemon().await;
        for account in accounts {
            env.pair(account).await;
            env.wait_state(account, "connected", connect).await;
        }
        env
    }

    /// The account's phone number, from its device JID (`PHONE:DEVICE@server`).
    pub async fn phone(&self, account: &str) -> String {
        let jid = self.jid(account).await;
        jid.split([':', '@']).next().unwrap().to_string()
    }

    /// Runs `walink ARGS --json`, which must succeed, and parses its output.
    pub async fn walink_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.walink(&all).await;
        assert!(
            out.status.success(),
            "walink {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("--json prints JSON")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(child) = &mut self.daemon {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!("---- walinkd log ----\n{}", self.daemon_log());
        }
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Checks `probe` keeps returning true for the whole of `duration` (for
/// "nothing happens" assertions, such as no reconnect after a logout).
pub async fn stays<F, Fut>(duration: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < end {
        assert!(probe().await, "no longer true: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends raw lines on a fresh connection and reads one reply line per line.
pub async fn raw_exchange(socket: &Path, lines: &[&[u8]]) -> Vec<Value> {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).lines();
    let mut replies = Vec::new();
    for line in lines {
        write.write_all(line).await.expect("write");
        write.write_all(b"\n").await.expect("write");
        let reply = tokio::time::timeout(Duration::from_secs(10), reader.next_line())
            .await
            .expect("a reply within 10 s")
            .expect("read reply")
            .expect("connection stays open");
        replies.push(serde_json::from_str(&reply).expect("reply is JSON"));
    }
    replies
}

/// Every file below `dir` with its SHA-256, sorted by path.
pub fn hashes(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let digest = Sha256::digest(std::fs::read(&path).unwrap());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                out.push((path.display().to_string(), hex));
            }
        }
    }
    out.sort();
    out
}

/// Runs walinkd on `env`'s config, which must refuse to start; returns
/// what it printed.
pub async fn walinkd_fails(env: &Env) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walinkd"))
        .arg("--config")
        .arg(env.config_path())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "walinkd must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
