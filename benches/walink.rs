//! `make bench`: walink's speed and memory figures, measured end to end: the
//! release `walinkd` and mock-wa on loopback. Results go to
//! `target/bench/results.json`, and a Markdown table is printed.
//!
//! `BENCH_ACCOUNTS` (default `100`) lists the account counts for the memory
//! and cold-start figures, e.g. `BENCH_ACCOUNTS=100,500`.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Env, eventually};
use mock_wa::Fault;
use serde_json::{Value, json};
use walink::ipc::{Client, StreamItem};

const RECONNECT_SAMPLES: usize = 20;
const SEND_SAMPLES: usize = 300;
const BURST: usize = 2_000;

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

/// Time from an injected fault to `connected` again, from the event stream.
async fn reconnect_times(env: &Env, jid: &str, fault: Fault) -> Vec<f64> {
    let mut client = Client::connect(&env.socket()).await.unwrap();
    let mut events = client
        .stream("subscribe", json!({ "account": "sales" }))
        .await
        .unwrap();
    let mut samples = Vec::new();
    for _ in 0..RECONNECT_SAMPLES {
        let start = Instant::now();
        assert_eq!(env.mock.fault(jid, fault), 1);
        loop {
            let item = tokio::time::timeout(Duration::from_secs(60), events.next())
                .await
                .expect("reconnected within 60 s")
                .unwrap()
                .expect("stream open");
            if let StreamItem::Notification(n) = item
                && n.params["kind"] == "state_changed"
                && n.params["state"] == "connected"
            {
                break;
            }
        }
        samples.push(start.elapsed().as_secs_f64());
    }
    samples
}

async fn send_figures(env: &Env, figures: &mut Vec<Figure>) {
    let mut client = Client::connect(&env.socket()).await.unwrap();
    let mut latencies = Vec::new();
    for i in 0..SEND_SAMPLES {
        let start = Instant::now();
        client
            .call(
                "send",
                json!({"account": "sales", "to": "+15551234567", "text": format!("m{i}")}),
            )
            .await
            .expect("send");
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    figures.push(Figure::new(
        "send → server ack, one client",
        "ms",
        latencies,
        "p50 ≤ 5 ms, p99 ≤ 25 ms",
    ));

    let socket = env.socket();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let socket = socket.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut client = Client::connect(&socket).await.unwrap();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= BURST {
                    return;
                }
                client
                    .call(
                        "send",
                        json!({"account": "sales", "to": "+15551234567", "text": format!("b{i}")}),
                    )
                    .await
                    .expect("send");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let rate = BURST as f64 / started.elapsed().as_secs_f64();
    figures.push(Figure::new(
        "sustained sends, 1 account, 16 clients",
        "msg/s",
        vec![rate],
        "≥ 2,000 msg/s",
    ));
}

async fn scale_figures(n: usize, figures: &mut Vec<Figure>) {
    let names: Vec<String> = (0..n).map(|i| format!("a{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut env = Env::new(&refs).await;
    env.start_daemon().await;
    let env = Arc::new(tokio::sync::RwLock::new(env));
    let mut pairing = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(50));
    for name in names.clone() {
        let env = env.clone();
        let gate = gate.clone();
        pairing.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            pair(&*env.read().await, &name).await;
        });
    }
    while let Some(r) = pairing.join_next().await {
        r.expect("pairing task");
    }
    let mut env = Arc::try_unwrap(env)
        .ok()
        .expect("no other owner")
        .into_inner();
    eventually(
        Duration::from_secs(300),
        "every account connected",
        || async { all_connected(&env).await.then_some(()) },
    )
    .await;
    // Idle memory: give the post-login work (prekey upload, syncs) time to end.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let pid = env.daemon.as_ref().unwrap().id().unwrap();
    let per_account = rss_bytes(pid) as f64 / n as f64 / (1024.0 * 1024.0);
    figures.push(Figure::new(
        format!("RSS per connected idle account, {n} accounts"),
        "MiB",
        vec![per_account],
        "≤ 3 MiB at 1,000",
    ));

    env.stop_daemon(libc::SIGTERM).await;
    let start = Instant::now();
    env.start_daemon().await;
    eventually(
        Duration::from_secs(300),
        "every account reconnected",
        || async { all_connected(&env).await.then_some(()) },
    )
    .await;
    figures.push(Figure::new(
        format!("cold start to all connected, {n} accounts"),
        "s",
        vec![start.elapsed().as_secs_f64()],
        "≤ 10 s at 500",
    ));
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let counts: Vec<usize> = std::env::var("BENCH_ACCOUNTS")
        .unwrap_or_else(|_| "100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut figures = Vec::new();

    let mut env = Env::new(&["sales"]).await;
    env.start_daemon().await;
    pair(&env, "sales").await;
    env.wait_state("sales", "connected", Duration::from_secs(60))
        .await;
    let jid = env.jid("sales").await;
    figures.push(Figure::new(
        "reconnect after EOF",
        "s",
        reconnect_times(&env, &jid, Fault::Eof).await,
        "p50 ≤ 0.5 s",
    ));
    figures.push(Figure::new(
        "reconnect after 515",
        "s",
        reconnect_times(&env, &jid, Fault::StreamError(515)).await,
        "p50 ≤ 0.5 s",
    ));
    send_figures(&env, &mut figures).await;
    drop(env);

    for n in counts {
        scale_figures(n, &mut figures).await;
    }

    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    std::fs::create_dir_all(&out).unwrap();
    let results = json!({ "figures": figures.iter().map(Figure::json).collect::<Vec<_>>() });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
    println!(
        "\n| figure | unit | n | min | p50 | p95 | max | target |\n|---|---|---|---|---|---|---|---|"
    );
    for f in &figures {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
            f.name,
            f.unit,
            f.samples.len(),
            f.samples[0],
            f.pct(0.5),
            f.pct(0.95),
            f.samples[f.samples.len() - 1],
            f.target
        );
    }
    println!("\nwritten to {}", out.join("results.json").display());
}
