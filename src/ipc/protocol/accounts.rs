//! Params and results of the methods about an account's link: `status`,
//! `health`, the commands (`initialize`, `reconnect`, `clear_session`,
//! `restart`), and pairing (`qr`, `pair_code`).

use serde::{Deserialize, Serialize};

use super::{AccountState, HealthLevel, Recommendations};

/// Params of `status`, `health` and `subscribe`: one account, or all when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFilter {
    #[serde(default)]
    pub account: Option<String>,
}

/// Params of `initialize`, `reconnect`, `clear_session`, `restart` and `qr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountParams {
    pub account: String,
}

/// Result of `initialize`, `reconnect`, `clear_session` and `restart`: the
/// account's state once the command was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub account: String,
    pub state: AccountState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    pub accounts: Vec<AccountStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub level: HealthLevel,
    /// Why the level is not `healthy`, one short sentence each; empty when healthy.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    /// Short snake_case code, e.g. `closed`, `restart_required`, `network`,
    /// `server_error`, `rate_limited`, `connect_timeout`, `logged_out`, `replaced`.
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Credentials are stored for this account.
    pub exists: bool,
    /// They were accepted by the server the last time they were used (or
    /// have not been refused yet).
    pub valid: bool,
    /// Size of the account's stored state on disk.
    pub size_bytes: u64,
    /// What the last validation of the stored state found wrong; `valid`
    /// is false while this is not empty.
    #[serde(default)]
    pub problems: Vec<String>,
    /// When the stored state was last validated.
    #[serde(default)]
    pub validated_at: Option<u64>,
    /// When the newest backup generation was taken.
    #[serde(default)]
    pub last_backup_at: Option<u64>,
}

/// One account in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountStatus {
    pub name: String,
    pub state: AccountState,
    /// The linked WhatsApp identity, e.g. `15551234567:12@s.whatsapp.net`.
    pub jid: Option<String>,
    pub health: Health,
    /// Start of the current connection; `null` unless connected.
    pub connected_since: Option<u64>,
    /// Seconds in the current connection; `null` unless connected.
    pub uptime_secs: Option<u64>,
    /// Failed attempts since the account was last connected.
    pub reconnect_attempts: u32,
    /// Connections re-established without anyone asking, since walinkd started.
    pub automatic_reconnections: u64,
    pub last_disconnect: Option<Disconnect>,
    /// When the next attempt is due; `null` unless `reconnecting`.
    pub next_retry_at: Option<u64>,
    pub last_keepalive_rtt_ms: Option<u64>,
    pub session: SessionInfo,
    pub recommendations: Recommendations,
    /// Messages waiting to be sent, and messages given up on.
    #[serde(default)]
    pub outbox: OutboxCounts,
    /// The WhatsApp Web version the account announces; `null` before its
    /// first connect.
    #[serde(default)]
    pub version: Option<WebVersionInfo>,
}

/// `status` → `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebVersionInfo {
    /// e.g. `2.3000.1026131876`.
    pub version: String,
    /// `pinned` (connection.client_version), `fetched` (from
    /// web.whatsapp.com within a day), `stored` (the last one that worked:
    /// the fetch is failing or not due) or `built_in` (never fetched).
    pub source: String,
    /// Why the last fetch of the version page failed, until one succeeds.
    pub fetch_error: Option<String>,
}

/// `status` → `outbox`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxCounts {
    /// Queued or sent, not yet acknowledged by the server.
    pub queued: u64,
    pub failed: u64,
}

/// `health` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    /// The worst level among `accounts` (`healthy` when there are none).
    pub level: HealthLevel,
    pub accounts: Vec<AccountHealth>,
}

impl HealthResult {
    pub fn new(accounts: Vec<AccountHealth>) -> HealthResult {
        let level = accounts
            .iter()
            .map(|a| a.health.level)
            .max()
            .unwrap_or(HealthLevel::Healthy);
        HealthResult { level, accounts }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHealth {
    pub name: String,
    pub state: AccountState,
    pub health: Health,
    pub recommendations: Recommendations,
}

impl From<&AccountStatus> for AccountHealth {
    fn from(status: &AccountStatus) -> AccountHealth {
        AccountHealth {
            name: status.name.clone(),
            state: status.state,
            health: status.health.clone(),
            recommendations: status.recommendations.clone(),
        }
    }
}

/// Params of the `qr` notifications pushed during a `qr` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrNotification {
    pub account: String,
    /// The payload to encode as a QR code; secret, never log it.
    pub code: String,
    /// Seconds until this code is replaced by the next one.
    pub timeout_secs: u64,
}

/// Why `qr` has no code to show yet: the account's state and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrWaiting {
    pub account: String,
    pub state: AccountState,
    pub reason: Option<String>,
    /// When the next attempt is due (Unix seconds), if one is scheduled.
    pub next_retry_at: Option<u64>,
}

/// Final result of `qr`, once the phone has linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrResult {
    pub jid: String,
}

/// `pair_code` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairCodeParams {
    pub account: String,
    /// Phone number of the WhatsApp account to link, international format.
    pub phone: String,
}

/// `pair_code` result: the code to type on the phone
/// (WhatsApp → Linked devices → Link with phone number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCodeResult {
    pub code: String,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::{Notification, notification};
    use super::*;

    fn sample_status() -> AccountStatus {
        AccountStatus {
            name: "sales".into(),
            state: AccountState::Reconnecting,
            jid: Some("15551234567:3@s.whatsapp.net".into()),
            health: Health {
                level: HealthLevel::Degraded,
                reasons: vec!["reconnecting after network error (attempt 2)".into()],
            },
            connected_since: None,
            uptime_secs: None,
            reconnect_attempts: 2,
            automatic_reconnections: 7,
            last_disconnect: Some(Disconnect {
                reason: "network".into(),
                at: 1_763_776_000,
            }),
            next_retry_at: Some(1_763_776_005),
            last_keepalive_rtt_ms: Some(84),
            session: SessionInfo {
                exists: true,
                valid: true,
                size_bytes: 40960,
                problems: vec![],
                validated_at: Some(1763776100),
                last_backup_at: Some(1763776200),
            },
            recommendations: Recommendations {
                should_reconnect: true,
                ..Recommendations::default()
            },
            outbox: OutboxCounts {
                queued: 3,
                failed: 1,
            },
            version: Some(WebVersionInfo {
                version: "2.3000.1026131876".into(),
                source: "stored".into(),
                fetch_error: None,
            }),
        }
    }

    #[test]
    fn account_status_json_field_names_are_stable() {
        let value = serde_json::to_value(sample_status()).unwrap();
        assert_eq!(
            value,
            json!({
                "name": "sales",
                "state": "reconnecting",
                "jid": "15551234567:3@s.whatsapp.net",
                "health": {"level": "degraded", "reasons": ["reconnecting after network error (attempt 2)"]},
                "connected_since": null,
                "uptime_secs": null,
                "reconnect_attempts": 2,
                "automatic_reconnections": 7,
                "last_disconnect": {"reason": "network", "at": 1763776000},
                "next_retry_at": 1763776005,
                "last_keepalive_rtt_ms": 84,
                "session": {
                    "exists": true,
                    "valid": true,
                    "size_bytes": 40960,
                    "problems": [],
                    "validated_at": 1763776100,
                    "last_backup_at": 1763776200
                },
                "recommendations": {
                    "needs_pairing": false,
                    "should_reconnect": true,
                    "should_clear_session": false,
                    "should_restore_backup": false
                },
                "outbox": {"queued": 3, "failed": 1},
                "version": {"version": "2.3000.1026131876", "source": "stored", "fetch_error": null}
            })
        );
        let back: AccountStatus = serde_json::from_value(value).unwrap();
        assert_eq!(back, sample_status());
    }

    #[test]
    fn every_state_has_its_documented_name() {
        let names: Vec<String> = AccountState::ALL
            .iter()
            .map(|s| {
                let json = serde_json::to_value(s).unwrap();
                assert_eq!(json, Value::from(s.as_str()));
                s.to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "stopped",
                "connecting",
                "waiting_for_pairing",
                "connected",
                "reconnecting",
                "logged_out",
                "replaced",
                "failed"
            ]
        );
    }

    #[test]
    fn health_result_takes_the_worst_level() {
        let mut a = AccountHealth::from(&sample_status());
        let mut b = a.clone();
        a.health.level = HealthLevel::Critical;
        b.health.level = HealthLevel::Healthy;
        assert_eq!(HealthResult::new(vec![a, b]).level, HealthLevel::Critical);
        assert_eq!(HealthResult::new(vec![]).level, HealthLevel::Healthy);
    }

    #[test]
    fn qr_notification_shape() {
        let n = Notification::new(
            notification::QR,
            serde_json::to_value(QrNotification {
                account: "sales".into(),
                code: "2@abc,def,ghi".into(),
                timeout_secs: 20,
            })
            .unwrap(),
        );
        assert_eq!(
            serde_json::to_value(n).unwrap(),
            json!({"jsonrpc": "2.0", "method": "qr",
                   "params": {"account": "sales", "code": "2@abc,def,ghi", "timeout_secs": 20}})
        );
    }
}
