//! An account's facts as the wire shows them: its status with health
//! assessed now, and a message's delivery status. The request handler, the
//! conversation answers and the metrics all use these, so they sit below
//! each of them.

use std::time::SystemTime;

use crate::account::health::{HealthInput, assess};
use crate::account::{DeliveryStatus, Snapshot};
use crate::ipc::protocol::{self as wire, AccountStatus, MessageStatus, unix_secs};

pub(super) fn secs(t: Option<SystemTime>) -> Option<u64> {
    t.map(unix_secs)
}

/// An account snapshot as the wire shows it, with its health assessed now.
pub(super) fn status_of(s: &Snapshot) -> AccountStatus {
    let health = assess(&HealthInput {
        state: s.state,
        enabled: s.enabled,
        failures: s.failures as usize,
        session_exists: s.session_exists,
        session_valid: s.session_valid,
        keepalive_rtt_ms: s.keepalive_rtt_ms,
        network_problem: s.network_problem.as_deref(),
        state_reason: s.state_reason.as_deref(),
        store_problems: &s.custody.problems,
        store_warnings: &s.custody.warnings,
        storage_fault: s.storage_fault.as_deref(),
    });
    let uptime = s
        .connected_since
        .and_then(|since| SystemTime::now().duration_since(since).ok())
        .map(|d| d.as_secs());
    AccountStatus {
        name: s.name.clone(),
        state: s.state,
        jid: s.jid.clone(),
        health: wire::Health {
            level: health.level,
            reasons: health.reasons,
        },
        connected_since: secs(s.connected_since),
        uptime_secs: uptime,
        reconnect_attempts: s.failures,
        automatic_reconnections: s.automatic_reconnections,
        last_disconnect: s
            .last_disconnect
            .as_ref()
            .map(|(reason, at)| wire::Disconnect {
                reason: reason.clone(),
                at: unix_secs(*at),
            }),
        next_retry_at: secs(s.next_retry_at),
        last_keepalive_rtt_ms: s.keepalive_rtt_ms,
        session: wire::SessionInfo {
            exists: s.session_exists,
            valid: s.session_valid && s.custody.problems.is_empty(),
            size_bytes: s.size_bytes,
            problems: s.custody.problems.clone(),
            validated_at: secs(s.custody.validated_at),
            last_backup_at: secs(s.custody.last_backup_at),
        },
        recommendations: health.recommendations,
        outbox: wire::OutboxCounts::default(),
        version: s.version.as_ref().map(|v| wire::WebVersionInfo {
            version: v.version_string(),
            source: v.source.as_str().to_owned(),
            fetch_error: v.fetch_error.clone(),
        }),
    }
}

pub(super) fn wire_status(s: DeliveryStatus) -> MessageStatus {
    match s {
        DeliveryStatus::Queued => MessageStatus::Queued,
        DeliveryStatus::Sent => MessageStatus::Sent,
        DeliveryStatus::ServerAck => MessageStatus::ServerAck,
        DeliveryStatus::Delivered => MessageStatus::Delivered,
        DeliveryStatus::Read => MessageStatus::Read,
        DeliveryStatus::Failed => MessageStatus::Failed,
    }
}
