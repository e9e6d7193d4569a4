//! Pairing by phone-number code (`link_code_companion_reg`), as the server
//! and the account's phone play it:
//!
//! 1. `companion_hello`: the unpaired client sends its ephemeral key wrapped
//!    with the code it shows (PBKDF2 of the code, AES-CTR) and gets a ref.
//! 2. The user types the code on the phone (`POST /admin/pair-code`): the
//!    phone unwraps the client's ephemeral key with it, wraps its own
//!    ephemeral key the same way and the server sends it with the account's
//!    identity key in a `primary_hello` notification.
//! 3. `companion_finish`: the client sends a key bundle sealed (AES-GCM)
//!    under a key from the ephemeral agreement. It opens only if both sides
//!    used the same code; the ADV secret comes from both agreements and the
//!    bundle's random part, and keys the `pair-success` HMAC as a QR's
//!    secret would.

use crate::handlers::{iq_error, iq_result};
use crate::nodefmt::{child, content_bytes, jid_attr, server_jid};
use crate::pairing::{PairError, random_token, unix_now};
use crate::state::{PairingRef, ServerState, SessionHandle};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;
use wacore::pair_code::PairCodeUtils;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_libsignal::protocol::{KeyPair, PublicKey};

const BUNDLE_KEY_INFO: &[u8] = b"link_code_pairing_key_bundle_encryption_key";
const ADV_SECRET_INFO: &[u8] = b"adv_secret";

/// A client that asked for a code and waits for the user to type it.
struct Requested {
    registration: PairingRef,
    pairing_ref: String,
    wrapped_ephemeral: Vec<u8>,
}

/// A `primary_hello` sent; waiting for the client's `companion_finish`.
struct Hello {
    primary_ephemeral: KeyPair,
    companion_ephemeral: [u8; 32],
    account: KeyPair,
    companion_identity: [u8; 32],
    done: oneshot::Sender<Result<[u8; 32], String>>,
}

/// Both stages' pending state, shared by the connections and the admin API.
#[derive(Default)]
pub struct PairCodes {
    /// By phone number: the server routes a typed code by number.
    requested: Mutex<HashMap<String, Requested>>,
    /// By connection id.
    hellos: Mutex<HashMap<u64, Hello>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key32(bytes: Option<&[u8]>) -> Option<[u8; 32]> {
    bytes?.try_into().ok()
}

/// Answers an `md` IQ with `<link_code_companion_reg stage=…>` from the
/// unpaired connection `conn`.
pub fn handle_iq(state: &ServerState, conn: &SessionHandle, iq: &Node) -> Node {
    let Some(reg) = child(iq, "link_code_companion_reg") else {
        return iq_error(iq, 400, "bad-request");
    };
    match crate::nodefmt::attr(reg, "stage").as_deref() {
        Some("companion_hello") => companion_hello(state, conn, iq, reg),
        Some("companion_finish") => companion_finish(state, conn, iq, reg),
        _ => iq_error(iq, 400, "bad-request"),
    }
}

fn companion_hello(state: &ServerState, conn: &SessionHandle, iq: &Node, reg: &Node) -> Node {
    let phone = jid_attr(reg, "jid").map(|j| j.user.to_string());
    let wrapped = child(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")
        .and_then(content_bytes)
        .filter(|w| w.len() == 80);
    let noise = key32(child(reg, "companion_server_auth_key_pub").and_then(content_bytes));
    let (Some(phone), Some(wrapped), Some(noise)) = (phone, wrapped, noise) else {
        return iq_error(iq, 400, "bad-request");
    };
    let registration = lock(&state.pairing_refs)
        .values()
        .find(|r| r.conn.conn_id == conn.conn_id)
        .cloned();
    let Some(registration) = registration.filter(|r| r.noise_public == noise) else {
        // Only a connection that registered (and got refs) may pair.
        return iq_error(iq, 403, "forbidden");
    };
    let pairing_ref = random_token(20);
    lock(&state.pair_codes.requested).insert(
        phone,
        Requested {
            registration,
            pairing_ref: pairing_ref.clone(),
            wrapped_ephemeral: wrapped.to_vec(),
        },
    );
    iq_result(
        iq,
        vec![
            NodeBuilder::new("link_code_companion_reg")
                .children([NodeBuilder::new("link_code_pairing_ref")
                    .bytes(pairing_ref.into_bytes())
                    .build()])
                .build(),
        ],
    )
}

fn companion_finish(state: &ServerState, conn: &SessionHandle, iq: &Node, reg: &Node) -> Node {
    let Some(hello) = lock(&state.pair_codes.hellos).remove(&conn.conn_id) else {
        return iq_error(iq, 404, "item-not-found");
    };
    let wrapped = child(reg, "link_code_pairing_wrapped_key_bundle").and_then(content_bytes);
    let identity = key32(child(reg, "companion_identity_public").and_then(content_bytes));
    let outcome = match (wrapped, identity) {
        (Some(wrapped), Some(identity)) => open_bundle(&hello, wrapped, &identity),
        _ => Err("companion_finish lacks its key bundle or identity key".to_owned()),
    };
    let reply = match &outcome {
        Ok(_) => iq_result(iq, Vec::new()),
        Err(_) => iq_error(iq, 400, "bad-request"),
    };
    let _ = hello.done.send(outcome);
    reply
}

/// Opens the client's key bundle and derives the ADV secret from it.
fn open_bundle(hello: &Hello, wrapped: &[u8], identity: &[u8; 32]) -> Result<[u8; 32], String> {
    if wrapped.len() < 32 + 12 + 16 {
        return Err(format!(
            "key bundle of {} bytes is too short",
            wrapped.len()
        ));
    }
    let (salt, rest) = wrapped.split_at(32);
    let (iv, sealed) = rest.split_at(12);
    let agree = |private: &KeyPair, public: &[u8; 32]| {
        let public = PublicKey::from_djb_public_key_bytes(public).map_err(|e| e.to_string())?;
        private
            .private_key
            .calculate_agreement(&public)
            .map_err(|e| e.to_string())
    };
    let ephemeral_shared = agree(&hello.primary_ephemeral, &hello.companion_ephemeral)?;
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&ephemeral_shared, Some(salt), BUNDLE_KEY_INFO, &mut key)
        .map_err(|e| format!("bundle key derivation failed: {e:?}"))?;
    let iv: [u8; 12] = iv.try_into().map_err(|_| "bad bundle iv".to_owned())?;
    let mut bundle = Vec::with_capacity(96);
    wacore_libsignal::crypto::aes_256_gcm_decrypt(&key, &iv, b"", sealed, &mut bundle).map_err(
        |_| {
            "the client's key bundle does not open: the code typed on the phone is not the one the client shows".to_owned()
        },
    )?;
    let account_public = hello.account.public_key.public_key_bytes();
    if bundle.len() != 96
        || bundle[..32] != identity[..]
        || identity != &hello.companion_identity
        || bundle[32..64] != account_public[..]
    {
        return Err("the key bundle names other identity keys than this pairing's".into());
    }
    let identity_shared = agree(&hello.account, identity)?;
    let secret = [&ephemeral_shared[..], &identity_shared[..], &bundle[64..96]].concat();
    let mut adv_secret = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&secret, None, ADV_SECRET_INFO, &mut adv_secret)
        .map_err(|e| format!("ADV secret derivation failed: {e:?}"))?;
    Ok(adv_secret)
}

/// The phone of account `phone` takes `code` as the user typed it: sends
/// `primary_hello`, waits for the client's `companion_finish`, then pairs the
/// device as after a QR scan. Returns the device JID.
pub async fn enter_code(state: &ServerState, phone: &str, code: &str) -> Result<String, PairError> {
    let phone: String = phone.chars().filter(char::is_ascii_digit).collect();
    let code = code.trim().replace('-', "").to_ascii_uppercase();
    if !PairCodeUtils::validate_code(&code) {
        return Err(PairError::BadCode(format!(
            "{code:?} is not 8 characters of 1-9 and A-Z without I, O and U"
        )));
    }
    let requested = lock(&state.pair_codes.requested)
        .remove(&phone)
        .ok_or_else(|| PairError::NoCodeRequest(phone.clone()))?;
    let wrapped = requested.wrapped_ephemeral.clone();
    let primary_ephemeral = KeyPair::generate(&mut rand::rng());
    let primary_public = crate::cert::key32(primary_ephemeral.public_key.public_key_bytes());
    // PBKDF2 with 131,072 rounds, twice: off the runtime's threads.
    let (companion_ephemeral, wrapped_primary) = tokio::task::spawn_blocking(move || {
        let theirs = PairCodeUtils::decrypt_primary_ephemeral_pub(&wrapped, &code);
        (
            theirs,
            PairCodeUtils::encrypt_ephemeral_pub(&primary_public, &code),
        )
    })
    .await
    .map_err(|e| PairError::Crypto(e.to_string()))?;
    let companion_ephemeral = companion_ephemeral.map_err(|e| PairError::BadCode(e.to_string()))?;
    let account = state.account_key(&phone);
    let conn = requested.registration.conn.clone();
    let (done, outcome) = oneshot::channel();
    lock(&state.pair_codes.hellos).insert(
        conn.conn_id,
        Hello {
            primary_ephemeral,
            companion_ephemeral,
            account: account.clone(),
            companion_identity: requested.registration.identity_public,
            done,
        },
    );
    let notification = NodeBuilder::new("notification")
        .attr("type", "link_code_companion_reg")
        .attr("from", server_jid())
        .attr("id", random_token(10))
        .attr("t", unix_now().to_string())
        .children([NodeBuilder::new("link_code_companion_reg")
            .attr("stage", "primary_hello")
            .children([
                NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                    .bytes(wrapped_primary.to_vec())
                    .build(),
                NodeBuilder::new("primary_identity_pub")
                    .bytes(account.public_key.public_key_bytes().to_vec())
                    .build(),
                NodeBuilder::new("link_code_pairing_ref")
                    .bytes(requested.pairing_ref.clone().into_bytes())
                    .build(),
            ])
            .build()])
        .build();
    if !conn.send(notification) {
        lock(&state.pair_codes.hellos).remove(&conn.conn_id);
        return Err(PairError::ConnectionGone);
    }
    let timeout = state.config.pair_timeout;
    let adv_secret = match tokio::time::timeout(timeout, outcome).await {
        Err(_) => {
            lock(&state.pair_codes.hellos).remove(&conn.conn_id);
            return Err(PairError::Timeout(timeout));
        }
        Ok(Err(_)) => return Err(PairError::ConnectionGone),
        Ok(Ok(Err(reason))) => return Err(PairError::BadCode(reason)),
        Ok(Ok(Ok(secret))) => secret,
    };
    crate::pairing::offer(state, requested.registration, Some(&phone), adv_secret).await
}
