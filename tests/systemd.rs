//! walinkd as a systemd service: the notify protocol (READY, STATUS,
//! WATCHDOG, RELOADING, STOPPING) on a socket the test binds itself, SIGHUP
//! reloads that touch only the accounts that changed, and socket activation
//! with a listening descriptor passed as fd 3.

mod harness;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use harness::{Env, eventually, stays};
use serde_json::json;
use tokio::net::UnixDatagram;
use tokio::process::Command;
use tokio::sync::mpsc;

const CONNECT: Duration = Duration::from_secs(40);
const NOTIFY: Duration = Duration::from_secs(20);

/// Everything walinkd sent to its NOTIFY_SOCKET, one datagram per entry,
/// each split into its `KEY=value` lines.
struct Notifications {
    path: PathBuf,
    rx: mpsc::UnboundedReceiver<Vec<String>>,
    seen: Vec<Vec<String>>,
    cursor: usize,
}

impl Notifications {
    fn bind(dir: &Path) -> Notifications {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]);
                let lines = text.lines().map(str::to_owned).collect();
                if tx.send(lines).is_err() {
                    break;
                }
            }
        });
        Notifications {
            path,
            rx,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    /// The next datagram after the last one returned that has `line` (a
    /// whole line such as "READY=1"), waiting up to `timeout` for it.
    async fn next_with(&mut self, line: &str, timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while self.cursor < self.seen.len() {
                self.cursor += 1;
                let message = &self.seen[self.cursor - 1];
                if message.iter().any(|l| l == line) {
                    return message.clone();
                }
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(message)) => self.seen.push(message),
                Ok(None) => panic!("notify socket closed while waiting for {line}"),
                Err(_) => panic!(
                    "no {line} within {timeout:?}; walinkd sent: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// How many datagrams received so far carry `line`.
    fn count(&mut self, line: &str) -> usize {
        while let Ok(message) = self.rx.try_recv() {
            self.seen.push(message);
        }
        self.seen
            .iter()
            .filter(|m| m.iter().any(|l| l == line))
            .count()
    }
}

/// The value of `KEY=` in a notification, if present.
fn field<'a>(message: &'a [String], key: &str) -> Option<&'a str> {
    message
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn daemon_log_file(env: &Env) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.dir.path().join("walinkd.log"))
        .expect("daemon log")
}

/// Starts walinkd the way systemd does for `Type=notify` with `WatchdogSec`:
/// NOTIFY_SOCKET and WATCHDOG_USEC set. Returns once READY=1 arrived.
async fn start_notified(env: &mut Env, watchdog: Option<Duration>) -> (Notifications, Vec<String>) {
    let mut notify = Notifications::bind(env.dir.path());
    let mut command = Command::new(env!("CARGO_BIN_EXE_walinkd"));
    command
        .arg("--config")
        .arg(env.config_path())
        .env("RUST_LOG", "info,walink=debug")
        .env("NOTIFY_SOCKET", &notify.path)
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(daemon_log_file(env))
        .kill_on_drop(true);
    match watchdog {
        Some(timeout) => command.env("WATCHDOG_USEC", timeout.as_micros().to_string()),
        None => command.env_remove("WATCHDOG_USEC"),
    };
    env.daemon = Some(command.spawn().expect("spawn walinkd"));
    let ready = notify.next_with("READY=1", NOTIFY).await;
    (notify, ready)
}

fn daemon_pid(env: &Env) -> i32 {
    env.daemon
        .as_ref()
        .and_then(|c| c.id())
        .expect("walinkd running") as i32
}

fn signal(env: &Env, signal: i32) {
    // SAFETY: plain kill(2) on our own child.
    let rc = unsafe { libc::kill(daemon_pid(env), signal) };
    assert_eq!(rc, 0, "kill({signal}) on walinkd");
}

/// Appends `[[account]]` tables to the config the harness wrote.
fn write_accounts(env: &Env, accounts: &str) {
    env.write_config(&[], "");
    let mut text = std::fs::read_to_string(env.config_path()).expect("read config");
    text.push_str(accounts);
    std::fs::write(env.config_path(), text).expect("write config");
}

/// SIGHUP, then waits for RELOADING=1 and the READY=1 that ends the reload.
async fn reload(env: &Env, notify: &mut Notifications) -> (Vec<String>, Vec<String>) {
    signal(env, libc::SIGHUP);
    let reloading = notify.next_with("RELOADING=1", NOTIFY).await;
    let ready = notify.next_with("READY=1", NOTIFY).await;
    (reloading, ready)
}

fn now_monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_ready_status_watchdog_reloading_and_stopping() {
    let mut env = Env::new(&["sales"]).await;
    let (mut notify, ready) = start_notified(&mut env, Some(Duration::from_secs(2))).await;
    let status = field(&ready, "STATUS").expect("READY=1 comes with a STATUS= line");
    assert!(status.starts_with("1 account: "), "{status}");

    // The socket is bound by the time READY=1 is sent.
    env.call("status", json!({}))
        .await
        .expect("walinkd answers once ready");

    // WATCHDOG_USEC=2 s: a ping about every second. Four pings take at least
    // three intervals after the first (which comes at once), so 1.5 s is a
    // floor even with jitter, and 15 s is plenty under load.
    let first = tokio::time::Instant::now();
    notify.next_with("WATCHDOG=1", NOTIFY).await;
    for _ in 0..3 {
        notify.next_with("WATCHDOG=1", NOTIFY).await;
    }
    let elapsed = first.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "4 pings came in {elapsed:?}: faster than half of WATCHDOG_USEC"
    );
    assert!(
        elapsed <= Duration::from_secs(15),
        "4 pings took {elapsed:?}"
    );

    // The STATUS= line follows the account: it says so once sales waits for
    // pairing or connects (whatever the mock lets it do first).
    env.pair("sales").await;
    env.wait_state("sales", "connected", CONNECT).await;
    eventually(
        Duration::from_secs(10),
        "STATUS= reports the connected account",
        || {
            let seen = notify.count("WATCHDOG=1");
            let connected = notify
                .seen
                .iter()
                .filter_map(|m| field(m, "STATUS"))
                .any(|s| s == "1 account: 1 connected");
            async move { (connected && seen > 0).then_some(()) }
        },
    )
    .await;

    let before = now_monotonic_usec();
    let (reloading, ready) = reload(&env, &mut notify).await;
    let stamp: u64 = field(&reloading, "MONOTONIC_USEC")
        .expect("RELOADING=1 carries MONOTONIC_USEC")
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        stamp >= before && stamp <= now_monotonic_usec(),
        "MONOTONIC_USEC={stamp} is CLOCK_MONOTONIC at the reload"
    );
    assert_eq!(
        field(&ready, "STATUS"),
        Some("1 account: 1 connected"),
        "READY=1 after a reload restates the status"
    );

    // Pings go on after the reload.
    let pings = notify.count("WATCHDOG=1");
    eventually(NOTIFY, "watchdog pings after the reload", || {
        let more = notify.count("WATCHDOG=1") >= pings + 2;
        async move { more.then_some(()) }
    })
    .await;

    signal(&env, libc::SIGTERM);
    let stopping = notify.next_with("STOPPING=1", NOTIFY).await;
    assert_eq!(field(&stopping, "STATUS"), Some("stopping"));
    let mut child = env.daemon.take().expect("running");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("walinkd exits within 30 s of SIGTERM")
        .expect("wait");
    assert!(exit.success(), "clean exit: {exit}");
    assert!(
        !env.socket().exists(),
        "walinkd removes the socket it bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_watchdog_pings_unless_systemd_asks() {
    let mut env = Env::new(&["sales"]).await;
    let (mut notify, _) = start_notified(&mut env, None).await;
    // A status refresh happens every 2 s; wait past two of them and make
    // sure none of what arrived is a ping.
    env.pair("sales").await;
    env.wait_state("sales", "connected", CONNECT).await;
    notify
        .next_with("STATUS=1 account: 1 connected", NOTIFY)
        .await;
    assert_eq!(notify.count("WATCHDOG=1"), 0, "{:?}", notify.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_restarts_only_the_accounts_that_changed() {
    let mut env = Env::new(&[]).await;
    write_accounts(
        &env,
        "\n[[account]]\nname = \"keep\"\n\n[[account]]\nname = \"change\"\n\n\
         [[account]]\nname = \"gone\"\n",
    );
    let (mut notify, ready) = start_notified(&mut env, None).await;
    assert!(
        field(&ready, "STATUS").unwrap().starts_with("3 accounts: "),
        "{ready:?}"
    );
    for account in ["keep", "change", "gone"] {
        env.pair(account).await;
    }
    for account in ["keep", "change", "gone"] {
        env.wait_state(account, "connected", CONNECT).await;
    }
    let keep = env.status("keep").await;
    let change_jid = env.jid("change").await;
    let before = env.mock.stats();
    assert_eq!(before.connections_open, 3);

    // keep: untouched; change: a different setting; gone: removed;
    // new: added, waiting for pairing at once.
    write_accounts(
        &env,
        "\n[[account]]\nname = \"keep\"\n\n[[account]]\nname = \"change\"\npair_on_start = true\n\n\
         [[account]]\nname = \"new\"\npair_on_start = true\n",
    );
    let (_, ready) = reload(&env, &mut notify).await;
    assert!(
        field(&ready, "STATUS").unwrap().starts_with("3 accounts: "),
        "{ready:?}"
    );

    let err = env
        .call("status", json!({"account": "gone"}))
        .await
        .expect_err("a removed account is gone");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("unknown account \"gone\""),
        "{err}"
    );
    let change = env.wait_state("change", "connected", CONNECT).await;
    assert_eq!(change["jid"], change_jid.as_str(), "same session");
    env.wait_state("new", "waiting_for_pairing", CONNECT).await;
    eventually(CONNECT, "gone's connection closed", || async {
        (env.mock.stats().connections_open == 3).then_some(())
    })
    .await;
    let after = env.mock.stats();
    assert_eq!(
        after.connection_attempts - before.connection_attempts,
        2,
        "one new connection for change, one for new, none for keep"
    );
    assert_eq!(
        after.handshakes_ik - before.handshakes_ik,
        1,
        "only change logged in again"
    );
    assert_eq!(after.pairings, before.pairings, "nobody paired again");
    let keep_now = env.status("keep").await;
    assert_eq!(keep_now["state"], "connected");
    assert_eq!(keep_now["connected_since"], keep["connected_since"]);
    assert_eq!(keep_now["automatic_reconnections"], 0);

    // Disabling an account stops it and closes its connection, and again
    // nothing else moves.
    let before = env.mock.stats();
    write_accounts(
        &env,
        "\n[[account]]\nname = \"keep\"\n\n[[account]]\nname = \"change\"\npair_on_start = true\n\
         enabled = false\n\n[[account]]\nname = \"new\"\npair_on_start = true\n",
    );
    reload(&env, &mut notify).await;
    let change = env.wait_state("change", "stopped", CONNECT).await;
    assert_eq!(
        change["health"]["level"], "healthy",
        "disabled on purpose is not a problem: {change}"
    );
    assert_eq!(change["session"]["exists"], true, "the session is kept");
    eventually(CONNECT, "change's connection closed", || async {
        (env.mock.stats().connections_open == 2).then_some(())
    })
    .await;
    stays(
        Duration::from_secs(2),
        "no connection attempt after disabling",
        || async { env.mock.stats().connection_attempts == before.connection_attempts },
    )
    .await;
    let keep_now = env.status("keep").await;
    assert_eq!(keep_now["state"], "connected");
    assert_eq!(keep_now["connected_since"], keep["connected_since"]);
    assert_eq!(keep_now["automatic_reconnections"], 0);
    assert!(
        env.daemon_log().contains("config reloaded"),
        "the reload is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_on_sighup_is_rejected_and_the_running_one_stays() {
    let mut env = Env::new(&["sales"]).await;
    let (mut notify, _) = start_notified(&mut env, None).await;
    env.pair("sales").await;
    let sales = env.wait_state("sales", "connected", CONNECT).await;
    let attempts = env.mock.stats().connection_attempts;

    let good = std::fs::read_to_string(env.config_path()).unwrap();
    let bad = format!("{good}\n[[account]]\nname = \"Bad Name!\"\n");
    std::fs::write(env.config_path(), &bad).unwrap();
    let (_, ready) = reload(&env, &mut notify).await;
    assert_eq!(field(&ready, "STATUS"), Some("1 account: 1 connected"));

    let log = env.daemon_log();
    assert!(
        log.contains("new config rejected, keeping the running one"),
        "{log}"
    );
    assert!(log.contains("walink.toml"), "the reason names the file");
    let status = env.call("status", json!({})).await.expect("still serving");
    let names: Vec<&str> = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sales"]);
    let now = env.status("sales").await;
    assert_eq!(now["state"], "connected");
    assert_eq!(now["connected_since"], sales["connected_since"]);
    assert_eq!(env.mock.stats().connection_attempts, attempts);

    // The daemon still reloads once the file is fixed.
    write_accounts(
        &env,
        "\n[[account]]\nname = \"sales\"\n\n[[account]]\nname = \"support\"\n",
    );
    reload(&env, &mut notify).await;
    let status = env.call("status", json!({})).await.unwrap();
    assert_eq!(status["accounts"].as_array().unwrap().len(), 2, "{status}");
    assert_eq!(env.status("sales").await["state"], "connected");

    // [daemon] keys cannot move under a running daemon: the reload says so.
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        text.replace("log_target = \"stderr\"", "log_target = \"auto\""),
    )
    .unwrap();
    reload(&env, &mut notify).await;
    assert!(
        env.daemon_log()
            .contains("[daemon] changes take effect at the next start"),
        "{}",
        env.daemon_log()
    );
    assert!(env.socket().exists(), "still on the same socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uses_the_listening_socket_systemd_passes() {
    let mut env = Env::new(&["sales"]).await;
    // Bound by "systemd" (this test) at a path the config does not name:
    // walink can only reach the daemon there if walinkd used fd 3.
    let activated = env.dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&activated).expect("bind");
    let fd = listener.as_raw_fd();

    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        // LISTEN_PID must be walinkd's own pid: the shell's, kept by exec.
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_walinkd"))
        .arg("--config")
        .arg(env.config_path())
        .env("LISTEN_FDS", "1")
        .env("RUST_LOG", "info,walink=debug")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(daemon_log_file(&env))
        .kill_on_drop(true);
    // SAFETY: only dup2 and fcntl, both async-signal-safe, run in the child.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    env.daemon = Some(command.spawn().expect("spawn walinkd"));

    let out = eventually(
        Duration::from_secs(20),
        "walink status through the passed socket",
        || async {
            let out = Command::new(env!("CARGO_BIN_EXE_walink"))
                .arg("--socket")
                .arg(&activated)
                .args(["status", "--json"])
                .stdin(Stdio::null())
                .output()
                .await
                .expect("run walink");
            out.status.success().then_some(out)
        },
    )
    .await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["accounts"][0]["name"], "sales");
    assert!(
        !env.socket().exists(),
        "walinkd did not bind its own socket at {}",
        env.socket().display()
    );
    drop(listener);

    let exit = env.stop_daemon(libc::SIGTERM).await;
    assert!(exit.success(), "clean exit: {exit}");
    assert!(
        activated.exists(),
        "walinkd leaves the socket systemd bound in place"
    );
}
