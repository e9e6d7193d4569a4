//! QR pairing as the server and the simulated primary phone see it:
//! `pair-device` refs for a new device, the "scan" that signs an ADV device
//! identity with the account's key and sends `pair-success`, and the check
//! of the client's `pair-device-sign` reply.

use crate::nodefmt::{attr, child, content_bytes, jid_value, server_jid};
use crate::state::{
    Command, Device, LID_SERVER, PN_SERVER, PairResult, PairingRef, ServerState, SessionHandle,
    SignedPreKey, device_jid,
};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use buffa::Message as _;
use hmac::{KeyInit, Mac};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::oneshot;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_libsignal::protocol::PublicKey;
use waproto::whatsapp::{self as wa, ADVEncryptionType};

const ACCOUNT_SIG_PREFIX: &[u8] = &[6, 0];
const DEVICE_SIG_PREFIX: &[u8] = &[6, 1];

#[derive(Debug, Error)]
pub enum PairError {
    #[error("QR payload is malformed: {0}; pass the exact string the client displayed")]
    BadQr(String),
    #[error("pairing ref in the QR is unknown or expired; scan the QR the client shows now")]
    UnknownRef,
    #[error("QR keys do not match the connection that holds this ref")]
    KeyMismatch,
    #[error("the connection waiting for this QR has closed")]
    ConnectionGone,
    #[error("client did not answer pair-success within {0:?}")]
    Timeout(Duration),
    #[error("client rejected pairing: {0}")]
    Rejected(String),
    #[error("signing the device identity failed: {0}")]
    Crypto(String),
    #[error(
        "no device asked for a pairing code for {0}; start `pair-code` on the client first, then enter the code it shows"
    )]
    NoCodeRequest(String),
    #[error("the pairing code was refused: {0}")]
    BadCode(String),
}

/// Registration data a new device sent in its ClientPayload.
pub struct Registration {
    pub noise_public: [u8; 32],
    pub identity_public: [u8; 32],
    pub registration_id: u32,
    pub signed_prekey: SignedPreKey,
}

impl Registration {
    /// Reads the `devicePairingData` of a registration payload.
    pub fn from_payload(
        noise_public: [u8; 32],
        data: &wa::client_payload::DevicePairingRegistrationData,
    ) -> Option<Self> {
        let identity_public = data.e_ident.as_deref()?.try_into().ok()?;
        let reg = data.e_regid.as_deref()?;
        let registration_id = u32::from_be_bytes(reg.try_into().ok()?);
        let skey_id = data.e_skey_id.as_deref()?;
        if skey_id.len() != 3 {
            return None;
        }
        let id = u32::from_be_bytes([0, skey_id[0], skey_id[1], skey_id[2]]);
        Some(Self {
            noise_public,
            identity_public,
            registration_id,
            signed_prekey: SignedPreKey {
                id,
                public: data.e_skey_val.as_deref()?.try_into().ok()?,
                signature: data.e_skey_sig.clone()?,
            },
        })
    }
}

/// What a connection needs to finish a pairing started by `scan`.
pub struct PairOffer {
    /// The `pair-success` IQ to send.
    pub node: Node,
    /// Its id; the client answers with an IQ result of the same id.
    pub iq_id: String,
    /// The device to register once the reply verifies.
    pub device: Device,
    /// The account identity key that signed the ADV identity.
    pub account_public: [u8; 32],
    pub done: PairResult,
}

/// Hands out `config.qr_refs` refs to `conn` and returns the `pair-device` IQ.
pub fn issue_refs(state: &ServerState, conn: &SessionHandle, reg: &Registration) -> Node {
    let now = Instant::now();
    let mut refs = Vec::with_capacity(state.config.qr_refs);
    let mut map = state.pairing_refs.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..state.config.qr_refs {
        let r = format!("2@{}", random_token(24));
        let expires = now + state.config.qr_first_ttl + state.config.qr_ttl * i as u32;
        map.insert(
            r.clone(),
            PairingRef {
                conn: conn.clone(),
                noise_public: reg.noise_public,
                identity_public: reg.identity_public,
                registration_id: reg.registration_id,
                signed_prekey: reg.signed_prekey.clone(),
                expires,
            },
        );
        refs.push(NodeBuilder::new("ref").bytes(r.into_bytes()).build());
    }
    drop(map);
    NodeBuilder::new("iq")
        .attr("from", server_jid())
        .attr("type", "set")
        .attr("id", random_token(10))
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-device").children(refs).build()])
        .build()
}

/// Pairs the device showing `qr` to a new account (or to `phone`'s account)
/// and waits until the client's signed reply verified. Returns the device JID.
pub async fn scan(state: &ServerState, qr: &str, phone: Option<&str>) -> Result<String, PairError> {
    let (ref_str, noise, identity, adv_secret) = parse_qr(qr.trim())?;
    let pending = {
        let mut map = state.pairing_refs.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, r| r.expires > Instant::now());
        let r = map.get(&ref_str).ok_or(PairError::UnknownRef)?;
        // A QR with foreign keys must not use up the ref of the real device.
        if r.noise_public != noise || r.identity_public != identity {
            return Err(PairError::KeyMismatch);
        }
        map.remove(&ref_str).ok_or(PairError::UnknownRef)?
    };
    offer(state, pending, phone, adv_secret).await
}

/// What the phone does once it trusts the new device (after a QR scan or a
/// pairing code): signs an ADV identity for it with the account key, sends
/// `pair-success` (HMAC keyed by `adv_secret`) and waits until the client's
/// signed reply verified. Returns the device JID.
pub(crate) async fn offer(
    state: &ServerState,
    pending: PairingRef,
    phone: Option<&str>,
    adv_secret: [u8; 32],
) -> Result<String, PairError> {
    let identity = pending.identity_public;
    let noise = pending.noise_public;
    // Other refs of this connection must not pair it a second time.
    state
        .pairing_refs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|_, r| r.conn.conn_id != pending.conn.conn_id);

    let (phone, lid_user, account, device_id) = state.account_for_new_device(phone);
    let account_public = crate::cert::key32(account.public_key.public_key_bytes());
    let now = unix_now();
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(rand::random()),
        timestamp: Some(now),
        key_index: Some(u32::from(device_id)),
        account_type: Some(ADVEncryptionType::E2EE),
        device_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let to_sign = [ACCOUNT_SIG_PREFIX, &details, &identity].concat();
    let account_signature = account
        .private_key
        .calculate_signature(&to_sign, &mut rand::rng())
        .map_err(|e| PairError::Crypto(e.to_string()))?;
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account_public.to_vec()),
        account_signature: Some(account_signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&adv_secret)
        .map_err(|e| PairError::Crypto(e.to_string()))?;
    mac.update(&signed);
    let container = wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        account_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec();

    let jid = device_jid(&phone, device_id, PN_SERVER);
    let lid = device_jid(&lid_user, device_id, LID_SERVER);
    let iq_id = random_token(10);
    let node = NodeBuilder::new("iq")
        .attr("from", server_jid())
        .attr("type", "set")
        .attr("id", iq_id.clone())
        .attr("xmlns", "md")
        .attr("t", now.to_string())
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity").bytes(container).build(),
                NodeBuilder::new("platform").attr("name", "smba").build(),
                NodeBuilder::new("device")
                    .attr("jid", jid_value(&jid))
                    .attr("lid", jid_value(&lid))
                    .build(),
                NodeBuilder::new("biz")
                    .attr("name", format!("Mock {phone}"))
                    .build(),
            ])
            .build()])
        .build();
    let device = Device {
        jid,
        lid,
        phone,
        device_id,
        noise_public: noise,
        identity_public: identity,
        registration_id: pending.registration_id,
        signed_prekey: pending.signed_prekey,
        paired_at: now,
    };
    let (tx, rx) = oneshot::channel();
    let offer = PairOffer {
        node,
        iq_id,
        device,
        account_public,
        done: tx,
    };
    if !pending.conn.command(Command::PairSuccess(Box::new(offer))) {
        return Err(PairError::ConnectionGone);
    }
    let timeout = state.config.pair_timeout;
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Err(PairError::Timeout(timeout)),
        Ok(Err(_)) => Err(PairError::ConnectionGone),
        Ok(Ok(Err(reason))) => Err(PairError::Rejected(reason)),
        Ok(Ok(Ok(jid))) => Ok(jid),
    }
}

/// Checks the client's answer to `pair-success`: an IQ result carrying
/// `pair-device-sign/device-identity`, the ADV identity we sent with the
/// device's own XEdDSA signature added.
pub fn verify_reply(offer: &PairOffer, reply: &Node) -> Result<(), String> {
    if attr(reply, "type").as_deref() == Some("error") {
        let err = child(reply, "error");
        return Err(format!(
            "client answered with error {} {}",
            err.and_then(|e| attr(e, "code")).unwrap_or_default(),
            err.and_then(|e| attr(e, "text")).unwrap_or_default()
        ));
    }
    let identity_node = child(reply, "pair-device-sign")
        .and_then(|s| child(s, "device-identity"))
        .ok_or("reply lacks pair-device-sign/device-identity")?;
    let bytes = content_bytes(identity_node).ok_or("device-identity has no bytes")?;
    let signed = wa::ADVSignedDeviceIdentity::decode_from_slice(bytes)
        .map_err(|e| format!("device-identity is not an ADVSignedDeviceIdentity: {e}"))?;
    let details = signed
        .details
        .as_deref()
        .ok_or("signed identity lacks details")?;
    let device_sig = signed
        .device_signature
        .as_deref()
        .ok_or("signed identity lacks the device signature")?;
    // WA Web and Baileys strip the key from their reply (the server holds
    // it); one that is sent must still be the account's.
    if signed
        .account_signature_key
        .as_deref()
        .is_some_and(|key| key != &offer.account_public[..])
    {
        return Err("account signature key was changed".into());
    }
    let device_key = PublicKey::from_djb_public_key_bytes(&offer.device.identity_public)
        .map_err(|e| format!("device identity key unusable: {e}"))?;
    let msg = [
        DEVICE_SIG_PREFIX,
        details,
        &offer.device.identity_public,
        &offer.account_public,
    ]
    .concat();
    if !device_key.verify_signature(&msg, device_sig) {
        return Err("device signature does not verify".into());
    }
    Ok(())
}

type QrParts = (String, [u8; 32], [u8; 32], [u8; 32]);

/// Parses the QR text as clients render it: `ref,noisePub,identityPub,
/// advSecret[,platform…]`, bare or as the link current clients show
/// (`https://wa.me/settings/linked_devices#` and then those fields; a phone
/// reads what follows `#`). Fields after the fourth are ignored.
pub fn parse_qr(qr: &str) -> Result<QrParts, PairError> {
    let body = qr.split_once('#').map_or(qr, |(_, fragment)| fragment);
    let parts: Vec<&str> = body.split(',').map(str::trim).collect();
    if parts.len() < 4 {
        return Err(PairError::BadQr(format!(
            "expected at least 4 comma-separated fields, got {}",
            parts.len()
        )));
    }
    let key = |i: usize, name: &str| -> Result<[u8; 32], PairError> {
        let raw = BASE64_STANDARD
            .decode(parts[i])
            .map_err(|e| PairError::BadQr(format!("{name} is not base64: {e}")))?;
        raw.try_into()
            .map_err(|_| PairError::BadQr(format!("{name} is not 32 bytes")))
    };
    if parts[0].is_empty() {
        return Err(PairError::BadQr(
            "the pairing ref (first field) is empty".into(),
        ));
    }
    Ok((
        parts[0].to_owned(),
        key(1, "noise key")?,
        key(2, "identity key")?,
        key(3, "adv secret")?,
    ))
}

/// A random alphanumeric token for ids and refs.
pub fn random_token(len: usize) -> String {
    use rand::RngExt as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> String {
        let k = |b: u8| BASE64_STANDARD.encode([b; 32]);
        format!("2@REF+/=,{},{},{}", k(1), k(2), k(3))
    }

    #[test]
    fn the_qr_parses_bare_and_as_the_link_clients_render() {
        for qr in [
            fields(),
            format!("{},1", fields()),
            format!("https://wa.me/settings/linked_devices#{},1", fields()),
            format!(
                "https://wa.me/settings/linked_devices#{},1,https://faq.whatsapp.com/r/ld",
                fields()
            ),
            format!(" {}\n", fields()),
        ] {
            let (r, noise, identity, adv) = parse_qr(qr.trim()).expect(&qr);
            assert_eq!(r, "2@REF+/=", "{qr}");
            assert_eq!((noise, identity, adv), ([1; 32], [2; 32], [3; 32]), "{qr}");
        }
        assert!(matches!(parse_qr("2@a,b"), Err(PairError::BadQr(_))));
        assert!(matches!(
            parse_qr("https://wa.me/settings/linked_devices#,a,b,c"),
            Err(PairError::BadQr(_))
        ));
    }
}
