//! Prometheus metrics over HTTP (`daemon.metrics_listen`, off by default).
//!
//! A minimal HTTP/1.1 responder: one GET per connection, answered and
//! closed. That is all a scraper needs, and it keeps an HTTP stack out of
//! the daemon. Values are read from the account snapshots at scrape time.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::accounts::Accounts;
use super::wire::status_of;
use crate::account::state::AccountState;

/// A request head larger than this is not a scraper's.
const MAX_REQUEST: usize = 8 * 1024;
/// A client that does not send its request in this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the listener (so a taken port fails the start, as the socket does).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for metrics on {addr}: {e}; change daemon.metrics_listen or free the port"
        )
    })
}

/// Serves scrapes until `shutdown`.
pub async fn serve(listener: TcpListener, accounts: Arc<Accounts>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let accounts = accounts.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &accounts)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, accounts: &Accounts) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(&mut stream, "431 Request Header Fields Too Large", "").await;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => {
            let body = render(accounts).await;
            respond(&mut stream, "200 OK", &body).await
        }
        ("GET", _) => respond(&mut stream, "404 Not Found", "metrics are at /metrics\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "only GET\n").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Label values escaped as the text format wants.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family: HELP, TYPE, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
    }
}

/// The whole exposition, in the Prometheus text format.
pub async fn render(accounts: &Accounts) -> String {
    let handles = accounts.all().await;
    let snapshots: Vec<_> = handles
        .iter()
        .map(|h| (h.snapshot(), h.messages().counts()))
        .collect();
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    f.header(
        "walink_build_info",
        "gauge",
        "walinkd's version, as a label; always 1.",
    );
    f.sample(
        "walink_build_info",
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        1,
    );

    f.header(
        "walink_account_state",
        "gauge",
        "1 for the state the account is in, 0 for the others.",
    );
    for (s, _) in &snapshots {
        for state in AccountState::ALL {
            f.sample(
                "walink_account_state",
                &format!("account=\"{}\",state=\"{state}\"", label(&s.name)),
                u8::from(s.state == state),
            );
        }
    }
    let per_account = |f: &mut Family<'_>,
                       name: &str,
                       kind: &str,
                       help: &str,
                       value: &dyn Fn(usize) -> Option<String>| {
        f.header(name, kind, help);
        for (i, (s, _)) in snapshots.iter().enumerate() {
            if let Some(v) = value(i) {
                f.sample(name, &format!("account=\"{}\"", label(&s.name)), v);
            }
        }
    };
    per_account(
        &mut f,
        "walink_account_connected",
        "gauge",
        "1 when the account is connected and logged in.",
        &|i| Some(u8::from(snapshots[i].0.state == AccountState::Connected).to_string()),
    );
    per_account(
        &mut f,
        "walink_account_health",
        "gauge",
        "Health level: 0 healthy, 1 degraded, 2 critical.",
        &|i| Some((status_of(&snapshots[i].0).health.level as u8).to_string()),
    );
    per_account(
        &mut f,
        "walink_account_reconnects_total",
        "counter",
        "Connections re-established without anyone asking, since walinkd started.",
        &|i| Some(snapshots[i].0.automatic_reconnections.to_string()),
    );
    per_account(
        &mut f,
        "walink_account_failed_attempts",
        "gauge",
        "Failed connection attempts since the account was last connected.",
        &|i| Some(snapshots[i].0.failures.to_string()),
    );
    per_account(
        &mut f,
        "walink_account_connected_since_seconds",
        "gauge",
        "Unix time the current connection started; absent unless connected.",
        &|i| {
            snapshots[i]
                .0
                .connected_since
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs().to_string())
        },
    );
    per_account(
        &mut f,
        "walink_last_backup_age_seconds",
        "gauge",
        "Seconds since the account's session was last backed up; absent before the first backup.",
        &|i| {
            snapshots[i]
                .0
                .custody
                .last_backup_at
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs().to_string())
        },
    );
    per_account(
        &mut f,
        "walink_keepalive_rtt_seconds",
        "gauge",
        "Round trip of the last keepalive; absent until one was measured.",
        &|i| {
            snapshots[i]
                .0
                .keepalive_rtt_ms
                .map(|ms| format!("{}", ms as f64 / 1000.0))
        },
    );
    f.header(
        "walink_outbox_messages",
        "gauge",
        "Messages in the outbox: queued (not yet acknowledged) and failed.",
    );
    for (s, counts) in &snapshots {
        let name = label(&s.name);
        f.sample(
            "walink_outbox_messages",
            &format!("account=\"{name}\",status=\"queued\""),
            counts.queued,
        );
        f.sample(
            "walink_outbox_messages",
            &format!("account=\"{name}\",status=\"failed\""),
            counts.failed,
        );
    }
    per_account(
        &mut f,
        "walink_messages_received_total",
        "counter",
        "Messages received since walinkd started.",
        &|i| Some(snapshots[i].0.messages_in.to_string()),
    );
    per_account(
        &mut f,
        "walink_messages_sent_total",
        "counter",
        "Messages the server acknowledged since walinkd started.",
        &|i| Some(snapshots[i].0.messages_out.to_string()),
    );
    per_account(
        &mut f,
        "walink_store_size_bytes",
        "gauge",
        "Size of the account's stored state.",
        &|i| Some(snapshots[i].0.size_bytes.to_string()),
    );
    per_account(
        &mut f,
        "walink_network_check_ok",
        "gauge",
        "0 while the last network check failed (see `walink diagnose`), else 1.",
        &|i| Some(u8::from(snapshots[i].0.network_problem.is_none()).to_string()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
