//! A fake `Handler` and a server on a real Unix socket in a temp dir, shared
//! by the IPC and CLI tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use walink::ipc::protocol::{
    AccountHealth, AccountState, AccountStatus, Disconnect, Event, EventKind, Health, HealthLevel,
    HealthResult, QrNotification, Recommendations, Reply, RpcError, SessionInfo, StatusResult,
    notification, to_result,
};
use walink::ipc::{Handler, NotificationSink};

/// How long a test waits for something that should happen at once.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Sends a message on drop, so a test can see a handler future being dropped.
struct DropSignal(mpsc::UnboundedSender<&'static str>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send("dropped");
    }
}

pub struct Fake {
    pub dropped: mpsc::UnboundedSender<&'static str>,
}

pub fn account(name: &str, level: HealthLevel) -> AccountStatus {
    let connected = level == HealthLevel::Healthy;
    AccountStatus {
        name: name.to_owned(),
        state: if connected {
            AccountState::Connected
        } else {
            AccountState::Reconnecting
        },
        jid: Some("15551234567:4@s.whatsapp.net".to_owned()),
        health: Health {
            level,
            reasons: if connected {
                vec![]
            } else {
                vec![format!("{level} because the test says so")]
            },
        },
        connected_since: connected.then_some(1_763_776_000),
        uptime_secs: connected.then_some(3725),
        reconnect_attempts: if connected { 0 } else { 3 },
        automatic_reconnections: 5,
        last_disconnect: Some(Disconnect {
            reason: "network".to_owned(),
            at: 1_763_775_000,
        }),
        next_retry_at: (!connected).then_some(4_000_000_000),
        last_keepalive_rtt_ms: Some(42),
        session: SessionInfo {
            exists: true,
            valid: true,
            size_bytes: 40_960,
            problems: vec![],
            validated_at: None,
            last_backup_at: None,
        },
        recommendations: Recommendations {
            should_reconnect: !connected,
            ..Recommendations::default()
        },
        outbox: Default::default(),
        version: None,
    }
}

/// Accounts the fake knows: their name says their health.
const ACCOUNTS: [(&str, HealthLevel); 3] = [
    ("sales", HealthLevel::Healthy),
    ("slow", HealthLevel::Degraded),
    ("dead", HealthLevel::Critical),
];

fn select(params: &Value) -> Result<Vec<AccountStatus>, RpcError> {
    match params.get("account").and_then(Value::as_str) {
        None => Ok(ACCOUNTS.iter().map(|(n, l)| account(n, *l)).collect()),
        Some(name) => ACCOUNTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, l)| vec![account(n, *l)])
            .ok_or_else(|| RpcError::unknown_account(name, &ACCOUNTS.map(|(n, _)| n))),
    }
}

fn event(account: &str, kind: EventKind) -> Event {
    Event {
        account: account.to_owned(),
        at: 1_763_776_000,
        kind,
    }
}

#[async_trait::async_trait]
impl Handler for Fake {
    async fn handle(
        &self,
        method: &str,
        params: Value,
        sink: NotificationSink,
    ) -> Result<Reply, RpcError> {
        match method {
            "status" => to_result(&StatusResult {
                accounts: select(&params)?,
            }),
            "health" => to_result(&HealthResult::new(
                select(&params)?.iter().map(AccountHealth::from).collect(),
            )),
            "echo" => to_result(&params),
            "send" => to_result(&json!({"id": "3EB0C0FFEE", "status": "server_ack"})),
            "qr" => {
                for code in ["2@first,AAAA,BBBB,CCCC", "2@second,DDDD,EEEE,FFFF"] {
                    sink.notify(
                        notification::QR,
                        QrNotification {
                            account: "sales".into(),
                            code: code.into(),
                            timeout_secs: 20,
                        },
                    )
                    .map_err(RpcError::internal)?;
                }
                to_result(&json!({"jid": "15551234567:4@s.whatsapp.net"}))
            }
            "subscribe" => {
                let _guard = DropSignal(self.dropped.clone());
                sink.notify(
                    notification::EVENT,
                    event(
                        "sales",
                        EventKind::StateChanged {
                            state: AccountState::Reconnecting,
                            reason: Some("network".into()),
                            attempt: Some(2),
                            next_retry_at: None,
                        },
                    ),
                )
                .map_err(RpcError::internal)?;
                sink.notify(
                    notification::EVENT,
                    event(
                        "sales",
                        EventKind::Paired {
                            jid: "1@s.whatsapp.net".into(),
                        },
                    ),
                )
                .map_err(RpcError::internal)?;
                if params.get("account").and_then(Value::as_str) == Some("finite") {
                    return to_result(&json!({}));
                }
                // A live subscription: it ends only when the client leaves.
                std::future::pending::<()>().await;
                to_result(&())
            }
            "flood" => {
                let count = params.get("count").and_then(Value::as_u64).unwrap_or(1000);
                // What a handler's own upstream (a broadcast channel) lost.
                sink.add_missed(params.get("lost").and_then(Value::as_u64).unwrap_or(0));
                for i in 0..count {
                    sink.notify("tick", json!({ "i": i }))
                        .map_err(RpcError::internal)?;
                }
                to_result(&json!({"sent": count}))
            }
            other => Err(RpcError::method_not_found(other)),
        }
    }
}

pub struct Server {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub shutdown: CancellationToken,
    pub dropped: mpsc::UnboundedReceiver<&'static str>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds a socket in a fresh temp dir and serves the fake on it.
pub fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run").join("walink.sock");
    let listener = walink::ipc::bind(&path, None).unwrap();
    let (tx, dropped) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(walink::ipc::serve(
        listener,
        Arc::new(Fake { dropped: tx }),
        shutdown.clone(),
    ));
    Server {
        _dir: dir,
        path,
        shutdown,
        dropped,
        task,
    }
}
