//! The `baileys` section: Baileys 7, unmodified, from the interop suite
//! (`tests/mock-wa/interop/bench/baileys.js`, one node process holding every
//! session), against the same mock as walinkd's sections (a fresh one, as
//! each of theirs is), with as many idle sessions as the `scale` section
//! links and the same send runs as the `send` section; and each figure's
//! ratio to walinkd's of the same run, when that section ran too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::Env;
use crate::node::{INSTALL_NODE, install_packages};
use crate::{Figure, RECIPIENT, SEND_SAMPLES, SETTLE, senders};

/// One node process pairs, idles and sends; a thousand sessions and three
/// send runs stay well inside this.
const RUN_LIMIT: Duration = Duration::from_secs(1800);

/// V8's default heap limit (about 4 GiB) ran out at 1,000 sessions in one
/// process, 3.7 GiB in use; the figure is what Baileys needs, not a cap.
const NODE_HEAP_MIB: usize = 16 * 1024;

const REFERENCE: &str = "(reference: Baileys 7 against the same mock)";

/// walinkd's figures of this run that Baileys' are set beside.
#[derive(Default)]
pub struct Walinkd {
    /// RSS per connected idle account (MiB), by accounts linked.
    pub rss_per_account: BTreeMap<usize, f64>,
    /// CPU per sent message (ms), by accounts the sends spread over.
    pub cpu_per_message: BTreeMap<usize, f64>,
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mock-wa/interop")
}

/// Runs the script with `sessions` paired and, if `sends` is not empty,
/// one send run of `burst` messages per account count in it.
async fn run_script(sessions: usize, sends: &[usize], burst: usize) -> Value {
    let env = Env::new(&[]).await;
    let info = json!({
        "ws": env.mock.ws_url(),
        "admin": env.mock.admin_url(),
        "media": env.mock.media_host(),
        "root_key": env.mock.root_public_key_b64(),
    });
    let runs: Vec<String> = sends
        .iter()
        .map(|&k| format!("{k}:{}", senders(k)))
        .collect();
    let warmup = if sends.is_empty() { 0 } else { SEND_SAMPLES };
    eprintln!(
        "bench: Baileys: {sessions} sessions, send runs over {sends:?} sessions, {burst} sends each"
    );
    let child = tokio::process::Command::new("node")
        .arg(format!("--max-old-space-size={NODE_HEAP_MIB}"))
        .arg("bench/baileys.js")
        .current_dir(interop_dir())
        .env("MOCK_WA_INFO", info.to_string())
        .env("BENCH_SESSIONS", sessions.to_string())
        .env("BENCH_IDLE_SECS", SETTLE.as_secs().to_string())
        .env("BENCH_WARMUP", warmup.to_string())
        .env("BENCH_SEND_RUNS", runs.join(","))
        .env("BENCH_SEND_BURST", burst.to_string())
        .env("BENCH_RECIPIENT", RECIPIENT.trim_start_matches('+'))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node for the baileys section: {e}; {INSTALL_NODE}"));
    let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("bench/baileys.js ran past {RUN_LIMIT:?} (killed)"))
        .expect("waiting for bench/baileys.js");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench/baileys.js failed ({}); the end of its stderr:\n{}",
        out.status,
        tail(&stderr, 4000)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench/baileys.js printed no result line ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn samples(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|l| l.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn number(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("bench/baileys.js: no number {key} in {v}"))
}

pub async fn figures(
    scale: &[usize],
    sends: &[usize],
    burst: usize,
    walinkd: &Walinkd,
    figures: &mut Vec<Figure>,
) {
    install_packages(&interop_dir());
    let most = sends.iter().copied().max();
    // The sends ride on the scale run of as many sessions as they need, if
    // there is one, as walinkd's send section links that many accounts.
    let mut plan: Vec<(usize, &[usize])> = scale
        .iter()
        .map(|&n| (n, if Some(n) == most { sends } else { &[] }))
        .collect();
    if let Some(most) = most.filter(|m| !scale.contains(m)) {
        plan.push((most, sends));
    }
    for (sessions, sends) in plan {
        let result = run_script(sessions, sends, burst).await;
        if scale.contains(&sessions) {
            rss_figures(&result, sessions, walinkd, figures);
        }
        let warmup = samples(&result["warmup_ms"]);
        if !warmup.is_empty() {
            figures.push(Figure::new(
                "Baileys send → server ack, one sender, one at a time",
                "ms",
                warmup,
                REFERENCE,
            ));
        }
        for run in result["runs"].as_array().into_iter().flatten() {
            send_figures(run, walinkd, figures);
        }
    }
}

fn rss_figures(result: &Value, n: usize, walinkd: &Walinkd, figures: &mut Vec<Figure>) {
    const MIB: f64 = 1024.0 * 1024.0;
    figures.push(Figure::new(
        "Baileys RSS, node with Baileys loaded, no session",
        "MiB",
        vec![number(result, "rss_before_pairing_bytes") / MIB],
        "(reference for the next row, which includes it as walinkd's includes its own)",
    ));
    let per_session = number(result, "rss_bytes") / n as f64 / MIB;
    figures.push(Figure::new(
        format!("Baileys RSS per idle session, {n} sessions"),
        "MiB",
        vec![per_session],
        REFERENCE,
    ));
    if let Some(walinkd) = walinkd.rss_per_account.get(&n) {
        figures.push(ratio(
            format!("RSS per session, {n} sessions"),
            walinkd / per_session,
        ));
    }
}

/// walinkd's figure over Baileys' for the same work.
fn ratio(what: String, value: f64) -> Figure {
    Figure::new(
        format!("walinkd / Baileys {what}"),
        "ratio",
        vec![value],
        "< 1: walinkd needs less",
    )
}

fn send_figures(run: &Value, walinkd: &Walinkd, figures: &mut Vec<Figure>) {
    let k = number(run, "sessions") as usize;
    let senders = number(run, "senders") as usize;
    let cpu = number(run, "cpu_ms_per_message");
    figures.push(Figure::new(
        format!("Baileys CPU per sent message, {k} sessions"),
        "ms",
        vec![cpu],
        REFERENCE,
    ));
    let latencies = samples(&run["latencies_ms"]);
    figures.push(Figure::new(
        format!("Baileys send → server ack under load, {k} sessions, {senders} senders"),
        "ms",
        latencies,
        REFERENCE,
    ));
    figures.push(Figure::new(
        format!("Baileys sustained sends, {k} sessions, {senders} senders"),
        "msg/s",
        vec![number(run, "msg_per_s")],
        REFERENCE,
    ));
    if let Some(walinkd) = walinkd.cpu_per_message.get(&k) {
        figures.push(ratio(
            format!("CPU per message, {k} sessions"),
            walinkd / cpu,
        ));
    }
}
