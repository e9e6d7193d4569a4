//! `make bench`: walink's speed and memory figures, measured end to end: the
//! release `walinkd` and mock-wa on loopback. Results go to
//! `target/bench/results.json`, and a Markdown table is printed.
//!
//! Environment (all optional):
//! - `BENCH_ONLY`: the sections to run, comma-separated, out of `reconnect`,
//!   `blackhole`, `send`, `scale`, `baileys` and `snapshot` (default: all of
//!   them). `baileys` runs Baileys 7 from the interop suite (Node.js 20 and
//!   npm; `npm ci` when its packages are stale) against the same mock, with
//!   `scale`'s idle sessions and `send`'s send runs, and adds walinkd /
//!   Baileys ratios for those of the two sections that ran
//!   (`benches/walink/baileys.rs`).
//! - `BENCH_ACCOUNTS`: account counts for the memory and cold-start figures
//!   (`scale`, and `baileys`' idle sessions), e.g. `100,500,1000` (default
//!   `100`).
//! - `BENCH_SEND_ACCOUNTS`: account counts the send figures (`send`, and
//!   `baileys`' sends) spread their load over (default `1,10,100`).
//! - `BENCH_SEND_BURST`: messages in each sustained send run (default
//!   4,000); a longer run leaves time to attach a profiler to walinkd,
//!   whose pid the run prints.
//! - `BENCH_SNAPSHOT_ACCOUNTS`: accounts in the backup-cycle run (default
//!   100).
//! - `BENCH_BLACKHOLE_SAMPLES`: dead-connection samples (default 3; each
//!   takes up to a keepalive period and a timeout).
//! - `BENCH_PAIR_CONCURRENCY`: accounts paired at once (default 100). A
//!   fresh pairing waits 10 s for an app-state key share the mock never
//!   sends, so pairing is mostly waiting and runs wide.
//! - `BENCH_KEEP_LOGS`: a directory where each run's walinkd log is copied,
//!   to see what the daemon did during a slow sample.

#[path = "walink/baileys.rs"]
mod baileys;
#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "../tests/mock-wa/interop/node.rs"]
mod node;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use baileys::Walinkd;
use harness::{Env, eventually};
use mock_wa::Fault;
use serde_json::{Value, json};
use walink::ipc::{Client, StreamItem};

const RECONNECT_SAMPLES: usize = 20;
const SEND_SAMPLES: usize = 300;
const STATUS_SAMPLES: usize = 20;
const BURST: usize = 4_000;
/// Clients sending at once in the sustained runs (at least one per account).
const SEND_CLIENTS: usize = 16;

/// Concurrent senders of a sustained run over `accounts` accounts.
fn senders(accounts: usize) -> usize {
    SEND_CLIENTS.max(accounts)
}
const RECIPIENT: &str = "+15551234567";
/// Time given to the post-login work (prekey upload, syncs) before an idle
/// memory reading.
const SETTLE: Duration = Duration::from_secs(15);
/// walinkd opens every account's trees before it answers; a first start
/// with a thousand accounts creates tens of thousands of sled trees.
const DAEMON_START: Duration = Duration::from_secs(600);

struct Figure {
    name: String,
    unit: &'static str,
    samples: Vec<f64>,
    target: &'static str,
}

impl Figure {
    fn new(
        name: impl Into<String>,
        unit: &'static str,
        mut samples: Vec<f64>,
        target: &'static str,
    ) -> Self {
        samples.sort_by(|a, b| a.total_cmp(b));
        Self {
            name: name.into(),
            unit,
            samples,
            target,
        }
    }

    fn pct(&self, p: f64) -> f64 {
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples[i.min(self.samples.len() - 1)]
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name, "unit": self.unit, "n": self.samples.len(),
            "min": self.samples[0], "p50": self.pct(0.5), "p95": self.pct(0.95),
            "p99": self.pct(0.99), "max": self.samples[self.samples.len() - 1],
            "target": self.target,
        })
    }
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn section(name: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|s| s.trim() == name),
        Err(_) => true,
    }
}

/// 1,000 accounts need more descriptors than some shells allow by default;
/// walinkd inherits the raised limit.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid, owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Links `account` through the IPC `qr` stream and the mock's scan.
async fn pair(env: &Env, account: &str) {
    let mut client = Client::connect(&env.socket()).await.expect("connect");
    let mut stream = client
        .stream("qr", json!({ "account": account }))
        .await
        .expect("qr");
    let code = loop {
        match stream.next().await.expect("qr stream") {
            Some(StreamItem::Notification(n)) if n.method == "qr" => {
                break n.params["code"].as_str().unwrap().to_string();
            }
            Some(StreamItem::Notification(_)) => {}
            other => panic!("qr ended before a code: {other:?}"),
        }
    };
    env.mock.scan(&code).await.expect("scan");
    while let Some(item) = stream.next().await.expect("qr stream") {
        if let StreamItem::Result(_) = item {
            break;
        }
    }
}

/// Copies `env`'s walinkd log to `$BENCH_KEEP_LOGS/<label>.log`, if set.
fn keep_log(env: &Env, label: &str) {
    if let Ok(dir) = std::env::var("BENCH_KEEP_LOGS") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).expect("BENCH_KEEP_LOGS directory");
        std::fs::write(dir.join(format!("{label}.log")), env.daemon_log()).expect("copy log");
    }
}

fn account_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("a{i:04}")).collect()
}

/// A running walinkd with `n` accounts, all linked and connected.
async fn linked_env(n: usize) -> Env {
    let names = account_names(n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut env = Env::new(&refs).await;
    env.start_daemon_within(DAEMON_START).await;
    let env = Arc::new(env);
    let started = Instant::now();
    let mut pairing = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(env_usize(
        "BENCH_PAIR_CONCURRENCY",
        100,
    )));
    for name in names {
        let env = env.clone();
        let gate = gate.clone();
        pairing.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            pair(&env, &name).await;
        });
    }
    while let Some(r) = pairing.join_next().await {
        r.expect("pairing task");
    }
    let env = Arc::try_unwrap(env).ok().expect("no other owner");
    eventually(
        Duration::from_secs(600),
        "every account connected",
        || async { all_connected(&env).await.then_some(()) },
    )
    .await;
    eprintln!(
        "bench: {n} accounts linked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    env
}

async fn all_connected(env: &Env) -> bool {
    match env.call("status", json!({})).await {
        Ok(v) => v["accounts"]
            .as_array()
            .is_some_and(|a| a.iter().all(|s| s["state"] == "connected")),
        Err(_) => false,
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// Waits for `account`'s next `state_changed` to `state` on `events`.
async fn next_state(events: &mut walink::ipc::client::Stream<'_>, state: &str, within: Duration) {
    loop {
        let item = tokio::time::timeout(within, events.next())
            .await
            .unwrap_or_else(|_| panic!("{state} within {within:?}"))
            .unwrap()
            .expect("stream open");
        if let StreamItem::Notification(n) = item
            && n.params["kind"] == "state_changed"
            && n.params["state"] == state
        {
            return;
        }
    }
}

/// CPU time (user + system) `pid` has used so far, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    (ticks(11) + ticks(12)) * 1000.0 / per_sec
}

/// Time from an injected fault to `connected` again, from the event stream.
async fn reconnect_times(env: &Env, account: &str, fault: Fault) -> Vec<f64> {
    let jid = env.jid(account).await;
    let mut client = Client::connect(&env.socket()).await.unwrap();
    let mut events = client
        .stream("subscribe", json!({ "account": account }))
        .await
        .unwrap();
    let mut samples = Vec::new();
    for _ in 0..RECONNECT_SAMPLES {
        let start = Instant::now();
        assert_eq!(env.mock.fault(&jid, fault), 1);
        next_state(&mut events, "connected", Duration::from_secs(60)).await;
        samples.push(start.elapsed().as_secs_f64());
    }
    samples
}

/// Time from a blackhole (the server stops answering, the socket stays
/// open) to walinkd's first new connection attempt, with the default
/// keepalive settings; then waits for `connected` again.
async fn blackhole_times(env: &Env, account: &str, samples: usize) -> Vec<f64> {
    let jid = env.jid(account).await;
    let mut client = Client::connect(&env.socket()).await.unwrap();
    let mut events = client
        .stream("subscribe", json!({ "account": account }))
        .await
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..samples {
        let before = env.mock.stats().connection_attempts;
        let start = Instant::now();
        assert_eq!(env.mock.fault(&jid, Fault::Blackhole), 1);
        env.mock
            .wait_for(Duration::from_secs(180), |s| s.connection_attempts > before)
            .await
            .expect("a reconnect attempt within 180 s of the blackhole");
        out.push(start.elapsed().as_secs_f64());
        next_state(&mut events, "connected", Duration::from_secs(60)).await;
    }
    out
}

/// Sends `total` messages from `clients` concurrent IPC clients, spread
/// round robin over `accounts`; returns each send's latency (ms) and the
/// rate over the whole run (msg/s).
async fn send_load(
    env: &Env,
    accounts: &[String],
    clients: usize,
    total: usize,
    tag: &str,
) -> (Vec<f64>, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let accounts = Arc::new(accounts.to_vec());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let socket = env.socket();
        let next = next.clone();
        let accounts = accounts.clone();
        let tag = tag.to_string();
        tasks.spawn(async move {
            let mut client = Client::connect(&socket).await.unwrap();
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let account = &accounts[i % accounts.len()];
                let start = Instant::now();
                client
                    .call(
                        "send",
                        json!({"account": account, "to": RECIPIENT, "text": format!("{tag}{i}")}),
                    )
                    .await
                    .expect("send");
                latencies.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        });
    }
    let mut latencies = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("send task"));
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (latencies, rate)
}

async fn send_figures(counts: &[usize], walinkd: &mut Walinkd, figures: &mut Vec<Figure>) {
    let Some(&most) = counts.iter().max() else {
        return;
    };
    let env = linked_env(most).await;
    let names = account_names(most);
    let (one_by_one, _) = send_load(&env, &names[..1], 1, SEND_SAMPLES, "s").await;
    figures.push(Figure::new(
        "send → server ack, 1 client, one at a time",
        "ms",
        one_by_one,
        "p50 ≤ 5 ms, p99 ≤ 25 ms",
    ));
    let pid = env.daemon.as_ref().unwrap().id().unwrap();
    let burst = env_usize("BENCH_SEND_BURST", BURST);
    for &k in counts {
        let clients = senders(k);
        eprintln!("bench: walinkd pid {pid}: {burst} sends over {k} accounts");
        let cpu_before = cpu_ms(pid);
        let (latencies, rate) = send_load(&env, &names[..k], clients, burst, "b").await;
        let cpu = (cpu_ms(pid) - cpu_before) / burst as f64;
        walinkd.cpu_per_message.insert(k, cpu);
        figures.push(Figure::new(
            format!("walinkd CPU per sent message, {k} accounts"),
            "ms",
            vec![cpu],
            "≤ 0.25 ms (2 cores shared with the mock and the clients)",
        ));
        figures.push(Figure::new(
            format!("send → server ack under load, {k} accounts, {clients} clients"),
            "ms",
            latencies,
            "p99 ≤ 25 ms at 100 accounts, 100 clients",
        ));
        figures.push(Figure::new(
            format!("sustained sends, {k} accounts, {clients} clients"),
            "msg/s",
            vec![rate],
            "≥ 4,000 msg/s at 10 accounts",
        ));
    }
    keep_log(&env, "send");
}

async fn scale_figures(n: usize, walinkd: &mut Walinkd, figures: &mut Vec<Figure>) {
    let mut env = linked_env(n).await;
    // Idle memory, once the post-login work is done.
    tokio::time::sleep(SETTLE).await;
    let pid = env.daemon.as_ref().unwrap().id().unwrap();
    let per_account = rss_bytes(pid) as f64 / n as f64 / (1024.0 * 1024.0);
    walinkd.rss_per_account.insert(n, per_account);
    figures.push(Figure::new(
        format!("RSS per connected idle account, {n} accounts"),
        "MiB",
        vec![per_account],
        "≤ 1 MiB",
    ));

    env.stop_daemon(libc::SIGTERM).await;
    env.mock.state().stats.reset_handshake_peak();
    let start = Instant::now();
    env.start_daemon_within(DAEMON_START).await;
    eventually(
        Duration::from_secs(600),
        "every account reconnected",
        || async { all_connected(&env).await.then_some(()) },
    )
    .await;
    figures.push(Figure::new(
        format!("cold start to all connected, {n} accounts"),
        "s",
        vec![start.elapsed().as_secs_f64()],
        "≤ 10 s at 1,000, ≤ 60 s at 5,000",
    ));
    figures.push(Figure::new(
        format!("peak concurrent handshakes during the cold start, {n} accounts"),
        "",
        vec![env.mock.stats().handshakes_in_flight_peak as f64],
        "bounded (connection.max_concurrent_handshakes, default 32)",
    ));
    let pid = env.daemon.as_ref().unwrap().id().unwrap();
    mass_drop_figures(&env, n, figures).await;
    // Right after the drop every account's post-connect work (its
    // snapshot) is still queued, and `walink status` is what a user runs
    // then; once settled is the everyday case.
    eprintln!("bench: walinkd pid {pid}: status of {n} accounts, just after the mass drop");
    status_figures(&env, n, "just after the mass drop", figures).await;
    tokio::time::sleep(SETTLE).await;
    eprintln!("bench: walinkd pid {pid}: status of {n} accounts, settled");
    status_figures(&env, n, "settled", figures).await;
    // Idle memory after a restart, without pairing's leftovers.
    figures.push(Figure::new(
        format!("RSS per connected idle account after restart, {n} accounts"),
        "MiB",
        vec![rss_bytes(pid) as f64 / n as f64 / (1024.0 * 1024.0)],
        "≤ 1 MiB",
    ));
    keep_log(&env, &format!("scale-{n}"));
}

/// The mock closes every connection at once: the time until every account
/// is connected again, and how many handshakes were in flight at most.
async fn mass_drop_figures(env: &Env, n: usize, figures: &mut Vec<Figure>) {
    let before = env.mock.stats().logins;
    env.mock.state().stats.reset_handshake_peak();
    let start = Instant::now();
    let dropped = env.mock.fault("all", Fault::Eof);
    assert!(dropped >= n, "{dropped} connections for {n} accounts");
    env.mock
        .wait_for(Duration::from_secs(600), |s| s.logins >= before + n as u64)
        .await
        .expect("every account logs in again");
    eventually(
        Duration::from_secs(600),
        "every account connected after the mass drop",
        || async { all_connected(env).await.then_some(()) },
    )
    .await;
    figures.push(Figure::new(
        format!("mass drop → all connected, {n} accounts"),
        "s",
        vec![start.elapsed().as_secs_f64()],
        "≤ 60 s at 5,000",
    ));
    figures.push(Figure::new(
        format!("peak concurrent handshakes after a mass drop, {n} accounts"),
        "",
        vec![env.mock.stats().handshakes_in_flight_peak as f64],
        "bounded (connection.max_concurrent_handshakes, default 32)",
    ));
}

/// `status` of every account, as `walink status` asks it; `when` names the
/// moment.
async fn status_figures(env: &Env, n: usize, when: &str, figures: &mut Vec<Figure>) {
    let mut client = Client::connect(&env.socket()).await.unwrap();
    let mut samples = Vec::new();
    for _ in 0..STATUS_SAMPLES {
        let start = Instant::now();
        let status = client.call("status", json!({})).await.expect("status");
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status["accounts"].as_array().map(Vec::len), Some(n));
    }
    figures.push(Figure::new(
        format!("status of all accounts, {when}, {n} accounts"),
        "ms",
        samples,
        "< 200 ms at 5,000",
    ));
}

/// A full backup cycle: every account snapshotted in turn, as the daemon's
/// schedule does; returns each `backup` call's time (ms), the whole cycle
/// (s) and how many calls stored a new generation (the others found the
/// state unchanged since the automatic backup at connect, and stored nothing).
async fn backup_cycle(env: &Env, names: &[String]) -> (Vec<f64>, f64, usize) {
    let mut client = Client::connect(&env.socket()).await.unwrap();
    let started = Instant::now();
    let mut each = Vec::with_capacity(names.len());
    let mut created = 0;
    for name in names {
        let start = Instant::now();
        let done = client
            .call("backup", json!({ "account": name }))
            .await
            .expect("backup");
        each.push(start.elapsed().as_secs_f64() * 1000.0);
        created += usize::from(done["created"] == true);
    }
    (each, started.elapsed().as_secs_f64(), created)
}

async fn snapshot_figures(figures: &mut Vec<Figure>) {
    let n = env_usize("BENCH_SNAPSHOT_ACCOUNTS", 100);
    let env = linked_env(n).await;
    let names = account_names(n);
    let (each, cycle, created) = backup_cycle(&env, &names).await;
    figures.push(Figure::new(
        format!("backup call per account, {n} accounts ({created} stored a new generation)"),
        "ms",
        each,
        "",
    ));
    figures.push(Figure::new(
        format!("full backup cycle, {n} accounts ({created} stored a new generation)"),
        "s",
        vec![cycle],
        "",
    ));
    // Send latency with and without a backup cycle running beside it.
    let senders = &names[..n.min(10)];
    let (quiet, _) = send_load(&env, senders, SEND_CLIENTS, BURST / 4, "q").await;
    let (busy, _) = tokio::join!(
        send_load(&env, senders, SEND_CLIENTS, BURST / 4, "c"),
        backup_cycle(&env, &names),
    )
    .0;
    figures.push(Figure::new(
        format!("send → server ack, 10 accounts, no backup running ({n} linked)"),
        "ms",
        quiet,
        "p50 ≤ 5 ms, p99 ≤ 25 ms",
    ));
    figures.push(Figure::new(
        format!("send → server ack, 10 accounts, during a backup cycle of {n}"),
        "ms",
        busy,
        "p50 ≤ 5 ms, p99 ≤ 25 ms",
    ));
    keep_log(&env, "snapshot");
}

/// Writes what was measured so far: a section that fails later (a run
/// with a thousand accounts can) leaves the earlier figures on disk.
fn save(figures: &[Figure]) -> std::path::PathBuf {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    std::fs::create_dir_all(&out).unwrap();
    let results = json!({ "figures": figures.iter().map(Figure::json).collect::<Vec<_>>() });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
    out
}

fn report(figures: &[Figure]) {
    let out = save(figures);
    println!(
        "\n| figure | unit | n | min | p50 | p95 | p99 | max | target |\n|---|---|---|---|---|---|---|---|---|"
    );
    for f in figures {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
            f.name,
            f.unit,
            f.samples.len(),
            f.samples[0],
            f.pct(0.5),
            f.pct(0.95),
            f.pct(0.99),
            f.samples[f.samples.len() - 1],
            f.target
        );
    }
    println!("\nwritten to {}", out.join("results.json").display());
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    raise_fd_limit();
    let mut figures = Vec::new();

    if section("reconnect") || section("blackhole") {
        let env = linked_env(1).await;
        let account = account_names(1).remove(0);
        if section("reconnect") {
            figures.push(Figure::new(
                "reconnect after EOF",
                "s",
                reconnect_times(&env, &account, Fault::Eof).await,
                "p50 ≤ 0.5 s",
            ));
            figures.push(Figure::new(
                "reconnect after 515",
                "s",
                reconnect_times(&env, &account, Fault::StreamError(515)).await,
                "p50 ≤ 0.5 s",
            ));
        }
        if section("blackhole") {
            let samples = env_usize("BENCH_BLACKHOLE_SAMPLES", 3);
            figures.push(Figure::new(
                "blackhole → first reconnect attempt",
                "s",
                blackhole_times(&env, &account, samples).await,
                "≤ 35 s",
            ));
        }
        keep_log(&env, "reconnect");
        save(&figures);
    }
    let scale = env_list("BENCH_ACCOUNTS", "100");
    let sends = env_list("BENCH_SEND_ACCOUNTS", "1,10,100");
    let mut walinkd = Walinkd::default();
    if section("send") {
        send_figures(&sends, &mut walinkd, &mut figures).await;
        save(&figures);
    }
    if section("scale") {
        for &n in &scale {
            scale_figures(n, &mut walinkd, &mut figures).await;
            save(&figures);
        }
    }
    if section("baileys") {
        let burst = env_usize("BENCH_SEND_BURST", BURST);
        baileys::figures(&scale, &sends, burst, &walinkd, &mut figures).await;
        save(&figures);
    }
    if section("snapshot") {
        snapshot_figures(&mut figures).await;
    }
    report(&figures);
}
