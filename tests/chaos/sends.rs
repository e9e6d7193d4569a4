//! The outbound half of the chaos workload: one task per account sending
//! texts and small images, to the contact's number or to its LID, each
//! under a fresh idempotency key and retried whole under that key when its
//! outcome is unknown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use walink::ipc::protocol::code;
use walink::ipc::{Client, ClientError};
use walink::wa::message_id_for_key;

use super::{Account, Ledger, Rng};

/// One send in five is a file.
const FILE_ONE_IN: u64 = 5;
/// One send in three goes to the contact's LID rather than its number.
const LID_ONE_IN: u64 = 3;
/// The images' size range: a few KB, one `send_file_part` each.
const IMAGE_BYTES: (u64, u64) = (1_000, 6_000);

/// The sender tasks, one per account.
pub(super) struct Senders {
    tasks: tokio::task::JoinSet<()>,
    stop: CancellationToken,
}

impl Senders {
    /// `epoch` keeps idempotency keys unique across restarts of the tasks.
    pub(super) fn start(
        socket: PathBuf,
        accounts: &[Account],
        ledger: &Arc<Mutex<Ledger>>,
        seed: u64,
        epoch: u64,
    ) -> Senders {
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, a) in accounts.iter().enumerate() {
            let salt = (i as u64 + 1 + epoch * 1000).wrapping_mul(0xA24B_AED4_963E_E407);
            tasks.spawn(send_loop(
                socket.clone(),
                Target {
                    account: a.name.clone(),
                    phone: a.contact.clone(),
                    lid: a.contact_lid.clone(),
                },
                format!("chaos-{epoch}-"),
                Rng::new(seed ^ salt),
                ledger.clone(),
                stop.clone(),
            ));
        }
        Senders { tasks, stop }
    }

    /// Stops sending; returns once every send in doubt has been answered.
    pub(super) async fn stop(&mut self) {
        self.stop.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            joined.expect("a sender task panicked");
        }
    }
}

/// Who one account writes to, by either address.
struct Target {
    account: String,
    phone: String,
    lid: String,
}

/// One send, kept whole until the daemon answers it: a retry sends the same
/// message, and the same file, under the same key.
struct Attempt {
    key: String,
    to: String,
    file: Option<Vec<u8>>,
}

/// One account's sends: `send` with a fresh idempotency key each time; when
/// the outcome is unknown (the daemon died mid-call, or is down) the same key
/// is retried until the daemon answers, so every attempt is accepted once. A
/// file's parts are sent again with it: a transfer lives only in the memory
/// of the walinkd that received it.
async fn send_loop(
    socket: PathBuf,
    target: Target,
    key_prefix: String,
    mut rng: Rng,
    ledger: Arc<Mutex<Ledger>>,
    stop: CancellationToken,
) {
    let account = target.account.as_str();
    let mut client: Option<Client> = None;
    let mut n = 0u64;
    let mut pending: Option<Attempt> = None;
    // Once stopped, only the pending send is finished, within a deadline.
    let deadline_after_stop = Duration::from_secs(120);
    let mut stopped_at: Option<Instant> = None;
    loop {
        if stop.is_cancelled() {
            let at = *stopped_at.get_or_insert_with(Instant::now);
            let Some(attempt) = &pending else {
                return;
            };
            if at.elapsed() > deadline_after_stop {
                ledger.lock().unwrap().unexpected.push(format!(
                    "{account}: send {:?} still unanswered {deadline_after_stop:?} after the faults stopped",
                    attempt.key
                ));
                return;
            }
        }
        let attempt = pending.take().unwrap_or_else(|| {
            n += 1;
            let key = format!("{key_prefix}{n}");
            let to = if rng.between(1, LID_ONE_IN) == 1 {
                target.lid.clone()
            } else {
                target.phone.clone()
            };
            let file = (rng.between(1, FILE_ONE_IN) == 1).then(|| image(account, &key, &mut rng));
            Attempt { key, to, file }
        });
        let outcome = match client.as_mut() {
            Some(c) => Some(send_once(c, account, &attempt).await),
            None => None,
        };
        match outcome {
            Some(Ok(reply)) => {
                let id = reply["id"].as_str().unwrap_or_default().to_string();
                let expected = message_id_for_key(account, &attempt.key);
                let mut l = ledger.lock().unwrap();
                if id != expected {
                    l.unexpected
                        .push(format!("{account}: send {} answered {reply}", attempt.key));
                }
                if attempt.to == target.lid {
                    l.to_lid += 1;
                }
                if let Some(file) = &attempt.file {
                    l.files
                        .entry(account.to_owned())
                        .or_default()
                        .insert(id.clone(), hex_sha256(file));
                }
                l.accepted.entry(account.to_owned()).or_default().insert(id);
            }
            Some(Err(ClientError::Rpc(e))) if e.code == code::SHUTTING_DOWN => {
                pending = Some(attempt);
                client = None;
            }
            Some(Err(ClientError::Rpc(e))) => {
                ledger
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("{account}: send {} refused: {e:?}", attempt.key));
            }
            Some(Err(_)) | None => {
                if outcome.is_some() {
                    ledger.lock().unwrap().retried += 1;
                }
                pending = Some(attempt);
                client = Client::connect(&socket).await.ok();
            }
        }
        // The workload's seeded pace between two sends (how hard the run
        // presses walinkd), not a wait for anything: every outcome above
        // was already read from its answer.
        tokio::time::sleep(rng.millis(10, 120)).await;
    }
}

/// `send`, after the file's one `send_file_part` (named by the key) when
/// the attempt carries a file.
async fn send_once(
    client: &mut Client,
    account: &str,
    attempt: &Attempt,
) -> Result<Value, ClientError> {
    let text = format!("{account} {}", attempt.key);
    let mut params = json!({
        "account": account, "to": attempt.to, "text": text, "id": attempt.key, "wait": false,
    });
    if let Some(file) = &attempt.file {
        client
            .call(
                "send_file_part",
                json!({
                    "account": account, "transfer": attempt.key, "part": 0,
                    "size": file.len(), "data": STANDARD.encode(file),
                }),
            )
            .await?;
        params["file"] = json!({"transfer": attempt.key, "name": "chaos.png"});
    }
    client.call("send", params).await
}

/// A small PNG whose bytes are this send's alone, so its SHA-256 names it.
fn image(account: &str, key: &str, rng: &mut Rng) -> Vec<u8> {
    let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    data.extend_from_slice(format!("{account} {key}").as_bytes());
    let len = rng.between(IMAGE_BYTES.0, IMAGE_BYTES.1) as usize;
    while data.len() < len {
        data.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    data
}

pub(super) fn hex_sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
