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
    shaped(&hasher.finalize())
}

/// A fresh id for a send without an idempotency key: unique per process by
/// a counter, across restarts by the clock, and across hosts by the hasher's
/// random seed.
pub fn new_message_id(account: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u128(nanos);
    let mut hasher = Sha256::new();
    hasher.update(b"walink-fresh\0");
    hasher.update(account.as_bytes());
    hasher.update(nanos.to_be_bytes());
    hasher.update(std::process::id().to_be_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    hasher.update(seed.finish().to_be_bytes());
    shaped(&hasher.finalize())
}

fn shaped(digest: &[u8]) -> String {
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

    #[test]
    fn fresh_ids_have_the_same_shape_and_never_repeat() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_message_id("sales")).collect();
        assert_eq!(ids.len(), 1000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 22 && id.starts_with("3EB0"))
        );
    }
}
