//! Server configuration.

use std::time::Duration;

/// How the mock behaves. `Default` matches the real server closely enough for
/// whatsapp-rust; tests shorten the QR timings.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// WebSocket listen address; port 0 picks a free port.
    pub listen: String,
    /// Admin HTTP listen address; port 0 picks a free port.
    pub admin_listen: String,
    /// Media host (uploads and downloads over plain HTTP) listen address;
    /// port 0 picks a free port. `media_conn` advertises it as `IP:PORT`.
    pub media_listen: String,
    /// How many `pair-device` refs a new device gets (the real server sends 6).
    pub qr_refs: usize,
    /// Lifetime of the first ref; the client shows it for 60 s.
    pub qr_first_ttl: Duration,
    /// Lifetime of each later ref; the client rotates every 20 s.
    pub qr_ttl: Duration,
    /// First phone number handed out; each new account takes the next one.
    pub first_phone: u64,
    /// How long `scan` waits for the client's signed `pair-device-sign`.
    pub pair_timeout: Duration,
    /// Time a client has to finish the Noise handshake.
    pub handshake_timeout: Duration,
    /// Accept IK from known devices; `false` forces XXfallback (for tests of
    /// the fallback path).
    pub accept_ik: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            admin_listen: "127.0.0.1:0".into(),
            media_listen: "127.0.0.1:0".into(),
            qr_refs: 6,
            qr_first_ttl: Duration::from_secs(60),
            qr_ttl: Duration::from_secs(20),
            first_phone: 15_550_000_001,
            pair_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(20),
            accept_ik: true,
        }
    }
}
