//! Shared server state: device registry, accounts, live sessions, pairing
//! refs and counters. Every lock here is a `std::sync::Mutex` held only for
//! map operations, never across an `.await`, so thousands of connection
//! tasks can share it.

use crate::cert::ServerIdentity;
use crate::config::MockConfig;
use crate::stats::Stats;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use wacore_binary::Node;
use wacore_libsignal::protocol::KeyPair;

/// The user part of JIDs for devices on the phone-number server.
pub const PN_SERVER: &str = "s.whatsapp.net";
/// The server part of LID JIDs.
pub const LID_SERVER: &str = "lid";
/// LIDs are made up as this base plus the account counter.
const LID_BASE: u64 = 100_000_000_000_000;

/// A signed prekey as the device registered it.
#[derive(Clone, Debug)]
pub struct SignedPreKey {
    pub id: u32,
    pub public: [u8; 32],
    pub signature: Vec<u8>,
}

/// A paired companion device, keyed in the registry by its JID.
#[derive(Clone, Debug)]
pub struct Device {
    /// `PHONE:DEVICE@s.whatsapp.net`.
    pub jid: String,
    /// `LID:DEVICE@lid`.
    pub lid: String,
    pub phone: String,
    pub device_id: u16,
    /// Noise static key the device authenticates with.
    pub noise_public: [u8; 32],
    /// Signal identity key (from registration).
    pub identity_public: [u8; 32],
    pub registration_id: u32,
    pub signed_prekey: SignedPreKey,
    /// Unix seconds.
    pub paired_at: u64,
}

/// A made-up account (one "phone"): its number, LID and the identity key the
/// simulated primary phone signs companion devices with.
pub struct Account {
    pub phone: String,
    pub lid_user: String,
    pub identity: KeyPair,
    pub next_device_id: u16,
}

/// A fault injected into connections through the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Send a WebSocket close frame and end the connection.
    Close,
    /// Drop the TCP stream without a close frame.
    Eof,
    /// Keep the socket open but stop answering anything.
    Blackhole,
    /// Send `<stream:error>` with this code, then close.
    StreamError(u16),
    /// A slow link: every frame the server sends on this connection waits
    /// this many milliseconds first, which also holds up reading what comes
    /// next (one task per connection). 0 makes the link fast again.
    Slow { delay_ms: u64 },
}

/// The longest delay a `slow` fault accepts: longer is a blackhole.
pub const MAX_SLOW_DELAY_MS: u64 = 10_000;

const STREAM_ERROR_CODES: &str = "401, 409, 429, 440, 503, 515, 516";

impl Fault {
    /// Parses the admin API's `kind` and its optional `code` or `delay_ms`.
    pub fn parse(kind: &str, code: Option<u16>, delay_ms: Option<u64>) -> Result<Self, String> {
        match kind {
            "slow" => match delay_ms {
                Some(delay_ms @ 0..=MAX_SLOW_DELAY_MS) => Ok(Fault::Slow { delay_ms }),
                Some(d) => Err(format!(
                    "slow delay_ms {d} is over {MAX_SLOW_DELAY_MS}; use blackhole for a dead link"
                )),
                None => Err("slow needs delay_ms (0 makes the link fast again)".into()),
            },
            "close" => Ok(Fault::Close),
            "eof" => Ok(Fault::Eof),
            "blackhole" => Ok(Fault::Blackhole),
            "stream-error" => match code {
                Some(c @ (401 | 409 | 429 | 440 | 503 | 515 | 516)) => Ok(Fault::StreamError(c)),
                Some(c) => Err(format!(
                    "stream-error code {c} is not one of {STREAM_ERROR_CODES}"
                )),
                None => Err(format!("stream-error needs a code ({STREAM_ERROR_CODES})")),
            },
            other => Err(format!(
                "fault kind {other:?} is not one of close, eof, blackhole, stream-error, slow"
            )),
        }
    }
}

/// Something another task asks a connection to do.
pub enum Command {
    /// Send this node to the device.
    Send(Node),
    Fault(Fault),
    /// Pairing: send `pair-success` and wait for the signed reply.
    PairSuccess(Box<crate::pairing::PairOffer>),
}

/// A way to reach one live connection. Cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    pub conn_id: u64,
    tx: mpsc::UnboundedSender<Command>,
}

impl SessionHandle {
    pub fn new(conn_id: u64) -> (Self, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { conn_id, tx }, rx)
    }

    /// Queues `node` for the device. `false` if the connection is gone.
    pub fn send(&self, node: Node) -> bool {
        self.tx.send(Command::Send(node)).is_ok()
    }

    pub fn fault(&self, fault: Fault) -> bool {
        self.tx.send(Command::Fault(fault)).is_ok()
    }

    pub(crate) fn command(&self, cmd: Command) -> bool {
        self.tx.send(cmd).is_ok()
    }
}

/// A `pair-device` ref handed to an unpaired connection.
#[derive(Clone)]
pub struct PairingRef {
    pub conn: SessionHandle,
    pub noise_public: [u8; 32],
    pub identity_public: [u8; 32],
    pub registration_id: u32,
    pub signed_prekey: SignedPreKey,
    pub expires: Instant,
}

/// JSON view of a device for `GET /admin/devices`.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceInfo {
    pub jid: String,
    pub lid: String,
    pub phone: String,
    pub device_id: u16,
    pub connected: bool,
    pub paired_at: u64,
}

/// The paired devices, indexed the ways a login and a fan-out look them up,
/// so neither scans every device of every account (thousands of logins at
/// once would make that quadratic).
#[derive(Default)]
struct Registry {
    by_jid: HashMap<String, Device>,
    /// JIDs of each account's devices, by phone number.
    by_phone: HashMap<String, Vec<String>>,
    /// How many registered devices authenticate with each Noise key.
    noise_keys: HashMap<[u8; 32], usize>,
}

impl Registry {
    fn insert(&mut self, device: Device) {
        self.remove(&device.jid);
        self.by_phone
            .entry(device.phone.clone())
            .or_default()
            .push(device.jid.clone());
        *self.noise_keys.entry(device.noise_public).or_default() += 1;
        self.by_jid.insert(device.jid.clone(), device);
    }

    fn remove(&mut self, jid: &str) -> bool {
        let Some(device) = self.by_jid.remove(jid) else {
            return false;
        };
        if let Some(jids) = self.by_phone.get_mut(&device.phone) {
            jids.retain(|j| j != jid);
            if jids.is_empty() {
                self.by_phone.remove(&device.phone);
            }
        }
        if let Some(n) = self.noise_keys.get_mut(&device.noise_public) {
            *n -= 1;
            if *n == 0 {
                self.noise_keys.remove(&device.noise_public);
            }
        }
        true
    }
}

/// Everything the connection tasks, the admin API and the stanza handlers
/// share. Reach it through `Arc<ServerState>`.
pub struct ServerState {
    pub config: MockConfig,
    pub identity: ServerIdentity,
    pub stats: Stats,
    /// The media host's blobs and `media_conn` auth tokens.
    pub media: crate::media::MediaStore,
    devices: Mutex<Registry>,
    accounts: Mutex<HashMap<String, Account>>,
    /// Logged-in sessions by device JID.
    sessions: Mutex<HashMap<String, SessionHandle>>,
    /// Every open connection (paired or not) by connection id, for faults.
    connections: Mutex<HashMap<u64, SessionHandle>>,
    pub(crate) pairing_refs: Mutex<HashMap<String, PairingRef>>,
    /// Pairing by phone-number code, between its stages.
    pub(crate) pair_codes: crate::pair_code::PairCodes,
    /// Phone number of every LID handed out (accounts and contacts alike).
    phones_by_lid: Mutex<HashMap<String, String>>,
    refuse_until: Mutex<Option<Instant>>,
    next_conn_id: AtomicU64,
    next_account: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short map locks cannot leave a map
    // half-updated in a way that matters to a test server; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServerState {
    pub fn new(config: MockConfig, identity: ServerIdentity) -> Self {
        Self {
            config,
            identity,
            stats: Stats::default(),
            media: crate::media::MediaStore::default(),
            devices: Mutex::default(),
            accounts: Mutex::default(),
            sessions: Mutex::default(),
            connections: Mutex::default(),
            pairing_refs: Mutex::default(),
            pair_codes: crate::pair_code::PairCodes::default(),
            phones_by_lid: Mutex::default(),
            refuse_until: Mutex::default(),
            next_conn_id: AtomicU64::new(1),
            next_account: AtomicU64::new(0),
        }
    }

    /// The registered device with this JID.
    pub fn device(&self, jid: &str) -> Option<Device> {
        lock(&self.devices).by_jid.get(jid).cloned()
    }

    /// Whether some registered device authenticates with this Noise key.
    pub fn knows_noise_key(&self, key: &[u8; 32]) -> bool {
        lock(&self.devices).noise_keys.contains_key(key)
    }

    /// The registered devices of account `phone`, by device id.
    pub fn devices_of(&self, phone: &str) -> Vec<Device> {
        let registry = lock(&self.devices);
        let mut all: Vec<Device> = registry
            .by_phone
            .get(phone)
            .into_iter()
            .flatten()
            .filter_map(|jid| registry.by_jid.get(jid).cloned())
            .collect();
        drop(registry);
        all.sort_by_key(|d| d.device_id);
        all
    }

    /// All registered devices, sorted by JID.
    pub fn devices(&self) -> Vec<Device> {
        let mut all: Vec<Device> = lock(&self.devices).by_jid.values().cloned().collect();
        all.sort_by(|a, b| a.jid.cmp(&b.jid));
        all
    }

    /// Registered devices with their connection state, for the admin API.
    pub fn device_infos(&self) -> Vec<DeviceInfo> {
        let sessions = lock(&self.sessions);
        self.devices()
            .into_iter()
            .map(|d| DeviceInfo {
                connected: sessions.contains_key(&d.jid),
                jid: d.jid,
                lid: d.lid,
                phone: d.phone,
                device_id: d.device_id,
                paired_at: d.paired_at,
            })
            .collect()
    }

    pub(crate) fn insert_device(&self, device: Device) {
        lock(&self.devices).insert(device);
        self.stats.touch();
    }

    /// Forgets device `jid` (the phone logged it out).
    pub fn remove_device(&self, jid: &str) -> bool {
        let removed = lock(&self.devices).remove(jid);
        self.stats.touch();
        removed
    }

    /// Pushes `node` to the logged-in device `jid`. `false` if it is offline.
    pub fn push(&self, jid: &str, node: Node) -> bool {
        let handle = lock(&self.sessions).get(jid).cloned();
        handle.is_some_and(|h| h.send(node))
    }

    /// The live session of device `jid`, if it is logged in.
    pub fn session(&self, jid: &str) -> Option<SessionHandle> {
        lock(&self.sessions).get(jid).cloned()
    }

    /// Registers a logged-in session; returns the one it replaces, if any.
    pub(crate) fn attach_session(&self, jid: &str, handle: SessionHandle) -> Option<SessionHandle> {
        let old = lock(&self.sessions).insert(jid.to_owned(), handle);
        self.stats.touch();
        old
    }

    /// Removes the session if it still belongs to connection `conn_id`.
    pub(crate) fn detach_session(&self, jid: &str, conn_id: u64) {
        let mut sessions = lock(&self.sessions);
        if sessions.get(jid).is_some_and(|h| h.conn_id == conn_id) {
            sessions.remove(jid);
        }
        drop(sessions);
        self.stats.touch();
    }

    pub(crate) fn open_connection(&self) -> (SessionHandle, mpsc::UnboundedReceiver<Command>) {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (handle, rx) = SessionHandle::new(id);
        lock(&self.connections).insert(id, handle.clone());
        (handle, rx)
    }

    pub(crate) fn close_connection(&self, conn_id: u64) {
        lock(&self.connections).remove(&conn_id);
        lock(&self.pairing_refs).retain(|_, r| r.conn.conn_id != conn_id);
    }

    /// Applies `fault` to device `target`'s session, or to every open
    /// connection when `target` is `"all"`. Returns how many were hit.
    pub fn inject_fault(&self, target: &str, fault: Fault) -> usize {
        let handles: Vec<SessionHandle> = if target == "all" {
            lock(&self.connections).values().cloned().collect()
        } else {
            self.session(target).into_iter().collect()
        };
        handles.iter().filter(|h| h.fault(fault)).count()
    }

    /// Refuses new connections for `seconds` (0 stops refusing).
    pub fn refuse_for(&self, seconds: u64) {
        *lock(&self.refuse_until) =
            (seconds > 0).then(|| Instant::now() + std::time::Duration::from_secs(seconds));
    }

    pub(crate) fn refusing(&self) -> bool {
        lock(&self.refuse_until).is_some_and(|until| Instant::now() < until)
    }

    /// Creates an account with the next phone number, or returns the
    /// existing one for `phone`. Returns (phone, lid user, identity, device id
    /// for a new companion).
    pub(crate) fn account_for_new_device(
        &self,
        phone: Option<&str>,
    ) -> (String, String, KeyPair, u16) {
        let mut accounts = lock(&self.accounts);
        let phone = match phone {
            Some(p) => p.to_owned(),
            None => {
                let n = self.next_account.fetch_add(1, Ordering::Relaxed);
                (self.config.first_phone + n).to_string()
            }
        };
        let lid_user = self.lid_of(&phone);
        let account = accounts.entry(phone.clone()).or_insert_with(|| Account {
            phone: phone.clone(),
            lid_user,
            identity: KeyPair::generate(&mut rand::rng()),
            next_device_id: 1,
        });
        let device_id = account.next_device_id;
        account.next_device_id = account.next_device_id.wrapping_add(1).max(1);
        (
            account.phone.clone(),
            account.lid_user.clone(),
            account.identity.clone(),
            device_id,
        )
    }

    /// The identity key pair of account `phone`, created if it is new.
    pub(crate) fn account_key(&self, phone: &str) -> KeyPair {
        let lid_user = self.lid_of(phone);
        lock(&self.accounts)
            .entry(phone.to_owned())
            .or_insert_with(|| Account {
                phone: phone.to_owned(),
                lid_user,
                identity: KeyPair::generate(&mut rand::rng()),
                next_device_id: 1,
            })
            .identity
            .clone()
    }

    /// The identity public key of the account `phone` (its primary device).
    pub fn account_identity(&self, phone: &str) -> Option<[u8; 32]> {
        lock(&self.accounts)
            .get(phone)
            .map(|a| crate::cert::key32(a.identity.public_key.public_key_bytes()))
    }
}

impl ServerState {
    /// The LID user of phone number `phone` (an account's or any contact's),
    /// remembered so the LID can be mapped back to the number.
    pub fn lid_of(&self, phone: &str) -> String {
        let lid = lid_user_for(phone);
        lock(&self.phones_by_lid)
            .entry(lid.clone())
            .or_insert_with(|| phone.to_owned());
        lid
    }

    /// The phone number whose LID user is `lid_user`, if one was handed out.
    pub fn phone_of_lid(&self, lid_user: &str) -> Option<String> {
        lock(&self.phones_by_lid).get(lid_user).cloned()
    }
}

/// The made-up LID of a phone number: a fixed base plus the number, so it is
/// stable across runs and never the number itself.
pub fn lid_user_for(phone: &str) -> String {
    let n = phone.bytes().fold(0u64, |acc, b| {
        acc.wrapping_mul(10)
            .wrapping_add(u64::from(b.wrapping_sub(b'0')))
    });
    let lid = LID_BASE + n % LID_BASE;
    // Only a number in [LID_BASE, 2·LID_BASE) can meet itself; move it on.
    if lid.to_string() == phone {
        (lid + LID_BASE).to_string()
    } else {
        lid.to_string()
    }
}

/// Builds `USER:DEVICE@SERVER`, or `USER@SERVER` for device 0.
pub fn device_jid(user: &str, device: u16, server: &str) -> String {
    if device == 0 {
        format!("{user}@{server}")
    } else {
        format!("{user}:{device}@{server}")
    }
}

/// Sender for a pairing outcome, shared by `scan` and the connection.
pub type PairResult = oneshot::Sender<Result<String, String>>;

/// A shared pointer, named for readability in signatures.
pub type State = Arc<ServerState>;

#[cfg(test)]
mod fault_tests {
    use super::*;

    #[test]
    fn slow_needs_a_bounded_delay() {
        assert_eq!(
            Fault::parse("slow", None, Some(250)),
            Ok(Fault::Slow { delay_ms: 250 })
        );
        assert_eq!(
            Fault::parse("slow", None, Some(0)),
            Ok(Fault::Slow { delay_ms: 0 })
        );
        assert!(Fault::parse("slow", None, None).is_err());
        let err = Fault::parse("slow", None, Some(MAX_SLOW_DELAY_MS + 1)).unwrap_err();
        assert!(err.contains("blackhole"), "{err}");
        assert_eq!(
            Fault::parse("stream-error", Some(515), None),
            Ok(Fault::StreamError(515))
        );
        let err = Fault::parse("latency", None, Some(5)).unwrap_err();
        assert!(err.contains("slow"), "{err}");
    }
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    fn device(phone: &str, device_id: u16, noise: u8) -> Device {
        Device {
            jid: device_jid(phone, device_id, PN_SERVER),
            lid: device_jid(&lid_user_for(phone), device_id, LID_SERVER),
            phone: phone.into(),
            device_id,
            noise_public: [noise; 32],
            identity_public: [0; 32],
            registration_id: 1,
            signed_prekey: SignedPreKey {
                id: 1,
                public: [0; 32],
                signature: Vec::new(),
            },
            paired_at: 0,
        }
    }

    #[test]
    fn devices_are_found_by_account_and_noise_key_until_removed() {
        let mut r = Registry::default();
        r.insert(device("15550000001", 2, 1));
        r.insert(device("15550000001", 1, 2));
        r.insert(device("15550000002", 1, 3));
        let jids = |r: &Registry, phone: &str| r.by_phone.get(phone).cloned().unwrap_or_default();
        assert_eq!(jids(&r, "15550000001").len(), 2);
        assert!(r.noise_keys.contains_key(&[2; 32]));

        // A device paired again under the same JID replaces the old entry.
        r.insert(device("15550000001", 1, 4));
        assert_eq!(jids(&r, "15550000001").len(), 2);
        assert!(!r.noise_keys.contains_key(&[2; 32]));
        assert!(r.noise_keys.contains_key(&[4; 32]));

        assert!(r.remove("15550000001:2@s.whatsapp.net"));
        assert!(!r.remove("15550000001:2@s.whatsapp.net"));
        assert_eq!(
            jids(&r, "15550000001"),
            vec!["15550000001:1@s.whatsapp.net"]
        );
        assert!(!r.noise_keys.contains_key(&[1; 32]));
        assert!(r.remove("15550000001:1@s.whatsapp.net"));
        assert!(!r.by_phone.contains_key("15550000001"));
        assert_eq!(jids(&r, "15550000002").len(), 1);
    }
}
