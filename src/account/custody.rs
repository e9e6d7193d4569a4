//! What an account's snapshot task knows, kept in the account's snapshot.

use std::time::SystemTime;

/// What the custody task knows, shown in status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Custody {
    /// Findings of the last validation that make the session invalid.
    pub problems: Vec<String>,
    /// Findings that only degrade the account (store above the warning size).
    pub warnings: Vec<String>,
    pub validated_at: Option<SystemTime>,
    pub last_backup_at: Option<SystemTime>,
}
