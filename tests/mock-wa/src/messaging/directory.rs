//! What the messaging side needs to know about paired accounts, which the
//! server core owns (it pairs devices and signs their identities).

use std::collections::HashMap;
use std::sync::Mutex;

/// A companion device of an account and the ADV key index it was paired with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompanionDevice {
    pub device: u16,
    pub key_index: u32,
}

/// An account's companion devices as the core's device registry knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountDevices {
    /// `raw_id` of the account's ADV key index list; clients treat a change
    /// as an identity change and drop sessions, so it must stay stable.
    pub raw_id: u32,
    pub companions: Vec<CompanionDevice>,
}

/// Implemented by the server core's device registry.
pub trait AccountDirectory: Send + Sync {
    /// The account whose phone number (user part of its JID) is `user`, if
    /// it exists; `None` makes `user` a plain simulated contact.
    fn account(&self, user: &str) -> Option<AccountDevices>;
}

/// A directory filled by hand: for tests, and for running the messaging
/// side without the core's registry.
#[derive(Default)]
pub struct StaticDirectory {
    accounts: Mutex<HashMap<String, AccountDevices>>,
}

impl StaticDirectory {
    pub fn set(&self, user: &str, devices: AccountDevices) {
        self.lock().insert(user.to_string(), devices);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AccountDevices>> {
        // A poisoned map is still a consistent map: every write is one insert.
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AccountDirectory for StaticDirectory {
    fn account(&self, user: &str) -> Option<AccountDevices> {
        self.lock().get(user).cloned()
    }
}
