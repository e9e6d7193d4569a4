//! The health model: from an account's state and counters to a level, the
//! reasons behind it and what an operator should do. Pure, so the rules are
//! unit-tested and `walink health` exit codes stay predictable.

use serde::{Deserialize, Serialize};

use super::state::AccountState;

/// Consecutive failed attempts after which "reconnecting" stops being a blip.
const CRITICAL_FAILURES: usize = 5;
/// A keepalive slower than this means the link is degraded even if up.
const SLOW_KEEPALIVE_MS: u64 = 5_000;

/// Ordered from best to worst, so the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthLevel {
    Healthy,
    Degraded,
    Critical,
}

impl HealthLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthLevel::Healthy => "healthy",
            HealthLevel::Degraded => "degraded",
            HealthLevel::Critical => "critical",
        }
    }
}

impl std::fmt::Display for HealthLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator should do about an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendations {
    pub needs_pairing: bool,
    pub should_reconnect: bool,
    pub should_clear_session: bool,
    pub should_restore_backup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub level: HealthLevel,
    pub reasons: Vec<String>,
    pub recommendations: Recommendations,
}

/// What the rules look at.
#[derive(Debug, Clone)]
pub struct HealthInput<'a> {
    pub state: AccountState,
    pub enabled: bool,
    pub failures: usize,
    pub session_exists: bool,
    pub session_valid: bool,
    pub keepalive_rtt_ms: Option<u64>,
    /// Verdict of a failed network check (`walink diagnose`).
    pub network_problem: Option<&'a str>,
    /// Why the account is in its state (last disconnect or failure reason).
    pub state_reason: Option<&'a str>,
    /// What validation of the stored state found wrong (see `snapshots.rs`).
    pub store_problems: &'a [String],
    /// Validation findings that only degrade (size above the warning limit).
    pub store_warnings: &'a [String],
    /// Why the message database takes no writes (`disk full: …`): sends
    /// are refused until it passes.
    pub storage_fault: Option<&'a str>,
}

pub fn assess(input: &HealthInput<'_>) -> Health {
    let mut level = HealthLevel::Healthy;
    let mut reasons = Vec::new();
    let mut rec = Recommendations::default();
    let mut raise = |to: HealthLevel, why: String, reasons: &mut Vec<String>| {
        level = level.max(to);
        reasons.push(why);
    };
    let because = |what: &str| match input.state_reason {
        Some(r) if !r.is_empty() => format!("{what}: {r}"),
        _ => what.to_string(),
    };

    if input.session_exists && !input.session_valid {
        raise(
            HealthLevel::Critical,
            "stored session failed validation".into(),
            &mut reasons,
        );
        rec.should_restore_backup = true;
    }
    for problem in input.store_problems {
        raise(
            HealthLevel::Critical,
            format!("stored state failed validation: {problem}"),
            &mut reasons,
        );
        rec.should_restore_backup |= input.session_exists;
    }
    if let Some(fault) = input.storage_fault {
        raise(
            HealthLevel::Critical,
            format!("{fault}; sends are refused until it can write again"),
            &mut reasons,
        );
    }
    for warning in input.store_warnings {
        raise(HealthLevel::Degraded, warning.clone(), &mut reasons);
    }

    if let Some(problem) = input.network_problem {
        raise(
            HealthLevel::Degraded,
            format!("network check: {problem}; run `walink diagnose` for the details"),
            &mut reasons,
        );
    }

    match input.state {
        AccountState::Connected => {
            if let Some(rtt) = input
                .keepalive_rtt_ms
                .filter(|rtt| *rtt > SLOW_KEEPALIVE_MS)
            {
                raise(
                    HealthLevel::Degraded,
                    format!("slow keepalive round trip ({rtt} ms)"),
                    &mut reasons,
                );
            }
        }
        AccountState::Connecting => {}
        AccountState::Reconnecting => {
            let lvl = if input.failures >= CRITICAL_FAILURES {
                HealthLevel::Critical
            } else {
                HealthLevel::Degraded
            };
            raise(
                lvl,
                because(&format!(
                    "reconnecting after {} failed attempt(s)",
                    input.failures
                )),
                &mut reasons,
            );
            rec.should_reconnect = input.failures >= CRITICAL_FAILURES;
        }
        AccountState::WaitingForPairing => {
            raise(
                HealthLevel::Degraded,
                "waiting for a QR scan or pair code".into(),
                &mut reasons,
            );
            rec.needs_pairing = true;
        }
        AccountState::Stopped if !input.enabled => {}
        AccountState::Stopped => {
            if !input.session_exists {
                raise(
                    HealthLevel::Degraded,
                    because("not linked yet"),
                    &mut reasons,
                );
                rec.needs_pairing = true;
            } else {
                raise(HealthLevel::Degraded, because("stopped"), &mut reasons);
                rec.should_reconnect = true;
            }
        }
        AccountState::LoggedOut => {
            raise(HealthLevel::Critical, because("logged out"), &mut reasons);
            rec.needs_pairing = true;
        }
        AccountState::Replaced => {
            raise(
                HealthLevel::Critical,
                because("session replaced"),
                &mut reasons,
            );
            rec.should_reconnect = true;
        }
        AccountState::Failed => {
            raise(HealthLevel::Critical, because("failed"), &mut reasons);
            rec.should_restore_backup = input.session_exists;
            rec.should_clear_session = input.session_exists && !input.session_valid;
        }
    }

    Health {
        level,
        reasons,
        recommendations: rec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(state: AccountState) -> HealthInput<'static> {
        HealthInput {
            state,
            enabled: true,
            failures: 0,
            session_exists: true,
            session_valid: true,
            keepalive_rtt_ms: Some(40),
            network_problem: None,
            state_reason: None,
            store_problems: &[],
            store_warnings: &[],
            storage_fault: None,
        }
    }

    #[test]
    fn a_failed_network_check_degrades_with_its_verdict() {
        let mut i = input(AccountState::Stopped);
        i.network_problem = Some("tcp_ipv4 failed: connection refused");
        let h = assess(&i);
        assert_eq!(h.level, HealthLevel::Degraded);
        assert!(
            h.reasons[0].contains("connection refused"),
            "{:?}",
            h.reasons
        );
    }

    #[test]
    fn connected_with_a_fast_keepalive_is_healthy() {
        let h = assess(&input(AccountState::Connected));
        assert_eq!(h.level, HealthLevel::Healthy);
        assert!(h.reasons.is_empty());
    }

    #[test]
    fn slow_keepalive_degrades() {
        let mut i = input(AccountState::Connected);
        i.keepalive_rtt_ms = Some(9_000);
        assert_eq!(assess(&i).level, HealthLevel::Degraded);
    }

    #[test]
    fn reconnecting_turns_critical_after_repeated_failures() {
        let mut i = input(AccountState::Reconnecting);
        i.failures = 2;
        assert_eq!(assess(&i).level, HealthLevel::Degraded);
        i.failures = CRITICAL_FAILURES;
        let h = assess(&i);
        assert_eq!(h.level, HealthLevel::Critical);
        assert!(h.recommendations.should_reconnect);
    }

    #[test]
    fn terminal_states_are_critical_with_the_right_advice() {
        let out = assess(&input(AccountState::LoggedOut));
        assert_eq!(out.level, HealthLevel::Critical);
        assert!(out.recommendations.needs_pairing);
        let replaced = assess(&input(AccountState::Replaced));
        assert_eq!(replaced.level, HealthLevel::Critical);
        assert!(replaced.recommendations.should_reconnect);
    }

    #[test]
    fn unlinked_account_needs_pairing_and_disabled_one_is_fine() {
        let mut i = input(AccountState::Stopped);
        i.session_exists = false;
        let h = assess(&i);
        assert_eq!(h.level, HealthLevel::Degraded);
        assert!(h.recommendations.needs_pairing);
        i.enabled = false;
        assert_eq!(assess(&i).level, HealthLevel::Healthy);
    }

    #[test]
    fn invalid_session_is_critical_and_suggests_a_restore() {
        let mut i = input(AccountState::Connected);
        i.session_valid = false;
        let h = assess(&i);
        assert_eq!(h.level, HealthLevel::Critical);
        assert!(h.recommendations.should_restore_backup);
    }

    #[test]
    fn a_full_disk_is_critical_with_its_reason() {
        let mut i = input(AccountState::Connected);
        i.storage_fault = Some("disk full: the message database /x/messages.db failed to commit");
        let h = assess(&i);
        assert_eq!(h.level, HealthLevel::Critical);
        assert!(h.reasons[0].starts_with("disk full: "), "{:?}", h.reasons);
        assert!(
            !h.recommendations.should_restore_backup,
            "a full disk is not damage"
        );
    }

    #[test]
    fn store_findings_reach_health() {
        let problems = ["1 stored record(s) do not decode".to_string()];
        let warnings = ["stored state is 300 MiB, above the warning limit".to_string()];
        let mut i = input(AccountState::Connected);
        i.store_warnings = &warnings;
        let h = assess(&i);
        assert_eq!(h.level, HealthLevel::Degraded);
        assert_eq!(h.reasons, warnings.to_vec());
        i.store_problems = &problems;
        let h = assess(&i);
        assert_eq!(h.level, HealthLevel::Critical);
        assert!(h.recommendations.should_restore_backup);
        assert!(h.reasons[0].contains("do not decode"), "{:?}", h.reasons);
    }

    #[test]
    fn reasons_carry_the_cause() {
        let mut i = input(AccountState::Failed);
        i.state_reason = Some("state database unreadable");
        let h = assess(&i);
        assert_eq!(
            h.reasons,
            vec!["failed: state database unreadable".to_string()]
        );
    }
}
