//! What `status` shows about an account, and how a network check's verdict
//! gets into it. The supervisor task keeps it current; the handle and the
//! companion tasks (snapshots) read it and write their parts.

use std::time::SystemTime;

use tokio::sync::watch;

use super::custody::Custody;
use super::events::Qr;
use super::state::AccountState;
use crate::wa::{DiagnoseReport, VersionStatus};

/// Everything `status` shows about an account, kept current by its supervisor.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: String,
    pub enabled: bool,
    pub state: AccountState,
    pub state_reason: Option<String>,
    pub jid: Option<String>,
    pub connected_since: Option<SystemTime>,
    /// Failed attempts since the account was last connected.
    pub failures: u32,
    pub automatic_reconnections: u64,
    pub last_disconnect: Option<(String, SystemTime)>,
    pub next_retry_at: Option<SystemTime>,
    pub keepalive_rtt_ms: Option<u64>,
    /// The WhatsApp Web version the last connect used, and where it came from.
    pub version: Option<VersionStatus>,
    /// The verdict of the last failed network check, until the account
    /// connects or a check passes.
    pub network_problem: Option<String>,
    /// Messages received and messages the server acknowledged, since start.
    pub messages_in: u64,
    pub messages_out: u64,
    pub session_exists: bool,
    pub session_valid: bool,
    pub size_bytes: u64,
    pub qr: Option<Qr>,
    /// Kept by the account's snapshot task (see `snapshots.rs`).
    pub custody: Custody,
    /// Why the message database takes no writes right now (`disk full: …`).
    pub storage_fault: Option<String>,
}

/// Puts a check's verdict into the snapshot (and so into health) and the log.
pub(super) fn record_network_check(
    status: &watch::Sender<Snapshot>,
    account: &str,
    report: &DiagnoseReport,
) {
    match report.failure() {
        Some(step) => {
            tracing::warn!(
                account = %account,
                event = "network_check_failed",
                step = %step.step,
                reason = %step.detail,
                "network check failed: {}{}",
                report.verdict,
                step.hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
            );
            // A connected account proves the path works; the probe's
            // failure (a blip, a proxy's connection limit) is only logged.
            let verdict = report.verdict.clone();
            status.send_modify(|s| {
                if s.state != AccountState::Connected {
                    s.network_problem = Some(verdict);
                }
            });
        }
        None => {
            tracing::info!(account = %account, event = "network_check_passed", "network check passed: {}", report.verdict);
            status.send_modify(|s| s.network_problem = None);
        }
    }
}
