//! Message ids derived from a client's idempotency key.
//!
//! The same key must always give the same WhatsApp id, across retries and
//! daemon restarts, so a resubmitted send is recognised as the same message
//! instead of reaching the recipient twice. Hashing (account, key) gives that
//! without storing a table; the shape matches WhatsApp Web's own ids.

use sha2::{Digest, Sha256};

/// `3EB0` followed by 18 upper-case hex digits, like WhatsApp Web.
pub fn message_id_for_key(account: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"walink-idempotency\0");
    hasher.update(account.as_bytes());
    hasher.update(b"\0");
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut id = String::with_capacity(22);
    id.push_str("3EB0");
    for byte in &digest[..9] {
        id.push_str(&format!("{byte:02X}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_id_and_different_keys_differ() {
        let a = message_id_for_key("sales", "order-17");
        assert_eq!(a, message_id_for_key("sales", "order-17"));
        assert_ne!(a, message_id_for_key("sales", "order-18"));
        assert_ne!(a, message_id_for_key("support", "order-17"));
        assert_eq!(a.len(), 22);
        assert!(a.starts_with("3EB0"));
        assert!(
            a[4..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
        );
    }
}
