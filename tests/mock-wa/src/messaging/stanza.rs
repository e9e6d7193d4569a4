//! Small helpers to read and build stanzas.

use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::handlers::{iq_error, iq_result};
pub use crate::nodefmt::{attr, jid_attr};

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A phone number or user JID reduced to the user part ("15551234567").
pub fn user_of(address: &str) -> Option<String> {
    let address = address.trim().trim_start_matches('+');
    let user = match address.split_once('@') {
        Some((user, _server)) => user.split([':', '.']).next().unwrap_or(user),
        None => address,
    };
    (!user.is_empty() && user.bytes().all(|b| b.is_ascii_digit())).then(|| user.to_string())
}

/// A message id in the form WhatsApp clients generate (`3EB0` + hex).
pub fn new_message_id() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    format!("3EB0{:016X}", rng.random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_come_from_numbers_and_jids() {
        assert_eq!(user_of("15551234567").as_deref(), Some("15551234567"));
        assert_eq!(user_of("+15551234567").as_deref(), Some("15551234567"));
        assert_eq!(
            user_of("15551234567@s.whatsapp.net").as_deref(),
            Some("15551234567")
        );
        assert_eq!(
            user_of("15551234567:3@s.whatsapp.net").as_deref(),
            Some("15551234567")
        );
        assert_eq!(user_of("bob"), None);
        assert_eq!(user_of(""), None);
    }

    #[test]
    fn message_ids_are_unique() {
        assert_ne!(new_message_id(), new_message_id());
        assert!(new_message_id().starts_with("3EB0"));
    }
}
