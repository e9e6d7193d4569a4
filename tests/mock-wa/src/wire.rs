//! WhatsApp's framing on top of WebSocket messages: an optional edge-routing
//! pre-intro (`ED\0\1` + 3-byte length + data), the 4-byte `WA` header whose
//! bytes are the Noise prologue, then frames each prefixed with a 3-byte
//! big-endian length. WebSocket message boundaries carry no meaning.

use thiserror::Error;

/// Frames are limited to 3 length bytes.
pub const MAX_FRAME: usize = (1 << 24) - 1;
/// Header versions seen from clients in the wild (Baileys 6.x sends 6.2).
const ACCEPTED_VERSIONS: [[u8; 2]; 2] = [[6, 2], [6, 3]];
const EDGE_MAGIC: &[u8; 4] = b"ED\x00\x01";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("connection header {0:02x?} is not `WA` with version 6.2 or 6.3")]
    BadHeader(Vec<u8>),
}

/// Incremental reader for the client-to-server byte stream.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    pos: usize,
    prologue: Option<[u8; 4]>,
    edge_routing: Option<Vec<u8>>,
}

impl FrameReader {
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The 4-byte `WA` header once read; it is the Noise prologue.
    pub fn prologue(&self) -> Option<[u8; 4]> {
        self.prologue
    }

    /// Edge-routing data the client sent before the header, if any.
    pub fn edge_routing(&self) -> Option<&[u8]> {
        self.edge_routing.as_deref()
    }

    /// Returns the next complete frame payload, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        if self.prologue.is_none() && !self.read_intro()? {
            return Ok(None);
        }
        let avail = &self.buf[self.pos..];
        if avail.len() < 3 {
            return Ok(None);
        }
        let len = usize::from(avail[0]) << 16 | usize::from(avail[1]) << 8 | usize::from(avail[2]);
        if avail.len() < 3 + len {
            return Ok(None);
        }
        let frame = avail[3..3 + len].to_vec();
        self.pos += 3 + len;
        if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        Ok(Some(frame))
    }

    fn read_intro(&mut self) -> Result<bool, WireError> {
        let mut at = self.pos;
        let avail = &self.buf[at..];
        if avail.len() < 4 {
            // Could still be the start of either prefix; wait for more.
            return Ok(false);
        }
        let mut edge = None;
        if &avail[..4] == EDGE_MAGIC {
            if avail.len() < 7 {
                return Ok(false);
            }
            let len =
                usize::from(avail[4]) << 16 | usize::from(avail[5]) << 8 | usize::from(avail[6]);
            if avail.len() < 7 + len + 4 {
                return Ok(false);
            }
            edge = Some(avail[7..7 + len].to_vec());
            at += 7 + len;
        }
        let header = &self.buf[at..at + 4];
        if &header[..2] != b"WA" || !ACCEPTED_VERSIONS.iter().any(|v| v[..] == header[2..]) {
            return Err(WireError::BadHeader(header.to_vec()));
        }
        self.prologue = Some([header[0], header[1], header[2], header[3]]);
        self.edge_routing = edge;
        self.pos = at + 4;
        Ok(true)
    }
}

/// Prefixes `payload` with its 3-byte length. Callers keep payloads under
/// [`MAX_FRAME`]; a larger one is a bug in the mock, reported as `None`.
pub fn encode_frame(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > MAX_FRAME {
        return None;
    }
    let len = payload.len();
    let mut out = Vec::with_capacity(3 + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
    out.extend_from_slice(payload);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_header_then_frames_split_across_messages() {
        let mut r = FrameReader::default();
        r.feed(b"WA\x06");
        assert_eq!(r.next_frame(), Ok(None));
        r.feed(b"\x03\x00\x00\x02a");
        assert_eq!(r.next_frame(), Ok(None));
        assert_eq!(r.prologue(), Some(*b"WA\x06\x03"));
        r.feed(b"b\x00\x00\x01c");
        assert_eq!(r.next_frame(), Ok(Some(b"ab".to_vec())));
        assert_eq!(r.next_frame(), Ok(Some(b"c".to_vec())));
        assert_eq!(r.next_frame(), Ok(None));
    }

    #[test]
    fn accepts_edge_routing_and_version_6_2() {
        let mut r = FrameReader::default();
        r.feed(b"ED\x00\x01\x00\x00\x02xyWA\x06\x02\x00\x00\x01z");
        assert_eq!(r.next_frame(), Ok(Some(b"z".to_vec())));
        assert_eq!(r.edge_routing(), Some(&b"xy"[..]));
        assert_eq!(r.prologue(), Some(*b"WA\x06\x02"));
    }

    #[test]
    fn rejects_unknown_header() {
        let mut r = FrameReader::default();
        r.feed(b"GET / HTTP");
        assert!(matches!(r.next_frame(), Err(WireError::BadHeader(_))));
        let mut r = FrameReader::default();
        r.feed(b"WA\x05\x03");
        assert!(r.next_frame().is_err());
    }

    #[test]
    fn encode_frame_prefixes_length() {
        assert_eq!(encode_frame(b"abc"), Some(b"\x00\x00\x03abc".to_vec()));
    }
}
