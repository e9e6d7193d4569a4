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

/// A fresh id for a send without an idempotency key: its first 11 hex
/// digits are the time in milliseconds, so the ids an account sends sort
/// in the order they were made and each lands next to the last one in the
/// message database's indexes, where a random id dirtied a page of its own
/// in each of them at every commit. Then 4 digits of a counter, so ids of
/// one process never repeat (that would take 65,536 in a millisecond) and
/// keep their order within a millisecond, and 3 of a randomly seeded hash,
/// so two hosts sending for one account at the same moment do not pick the
/// same id.
pub fn new_message_id(account: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let nanos = since_epoch.as_nanos();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut noise = std::collections::hash_map::RandomState::new().build_hasher();
    noise.write(account.as_bytes());
    noise.write_u128(nanos);
    noise.write_u32(std::process::id());
    let noise = noise.finish() & 0xFFF;
    let millis = since_epoch.as_millis() as u64 & ((1 << 44) - 1);
    format!("3EB0{millis:011X}{:04X}{noise:03X}", count & 0xFFFF)
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
    fn fresh_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1000).map(|_| new_message_id("sales")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    #[test]
    fn fresh_ids_have_the_same_shape_and_never_repeat() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_message_id("sales")).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| {
            id.len() == 22
                && id.starts_with("3EB0")
                && id[4..]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
        }));
    }
}
