//! Key encodings for sled trees.
//!
//! Composite keys length-prefix every part (u32 big-endian), so no byte value
//! inside a part can fake a boundary, and the encoding of the first parts is
//! a byte prefix of the whole key: `scan_prefix` over it selects exactly the
//! rows that share those parts. Numbers are big-endian so that sled's
//! lexicographic order is numeric order.

/// Encodes `parts` as one composite key.
pub(crate) fn composite(parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 4).sum();
    let mut out = Vec::with_capacity(len);
    for part in parts {
        let part_len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&part_len.to_be_bytes());
        out.extend_from_slice(&part[..part_len as usize]);
    }
    out
}

/// Splits a key built by [`composite`]; `None` when the bytes are not one.
pub(crate) fn split(mut key: &[u8]) -> Option<Vec<&[u8]>> {
    let mut parts = Vec::new();
    while !key.is_empty() {
        let (len, rest) = key.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (part, rest) = rest.split_at(len);
        parts.push(part);
        key = rest;
    }
    Some(parts)
}

/// A u32 id whose byte order is its numeric order.
pub(crate) fn id(value: u32) -> [u8; 4] {
    value.to_be_bytes()
}

/// Reads a key written by [`id`].
pub(crate) fn parse_id(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_round_trips_and_prefixes_select_exactly() {
        let key = composite(&[b"group@g.us", b"dev:1@s", b""]);
        assert_eq!(
            split(&key).unwrap(),
            vec![&b"group@g.us"[..], &b"dev:1@s"[..], &b""[..]]
        );
        let prefix = composite(&[b"group@g.us"]);
        assert!(key.starts_with(&prefix));
        // "group@g.u" is a string prefix of "group@g.us" but not a key prefix.
        assert!(!key.starts_with(&composite(&[b"group@g.u"])));
        assert!(split(&key[..key.len() - 1]).is_none());
        assert!(split(&[0, 0, 0, 9, 1]).is_none());
    }

    #[test]
    fn numbers_sort_numerically() {
        assert!(id(2) < id(256));
        assert_eq!(parse_id(&id(70_000)), Some(70_000));
        assert_eq!(parse_id(b"abc"), None);
    }
}
