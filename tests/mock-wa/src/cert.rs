//! The mock's Noise identity: a root key it owns, an intermediate certificate
//! signed by that root and a leaf certificate for the server static key signed
//! by the intermediate. Both signatures are real XEdDSA, so a client that is
//! given [`ServerIdentity::root_public`] in place of WhatsApp's hard-coded root
//! can verify the chain for real.

use buffa::Message as _;
use std::time::{SystemTime, UNIX_EPOCH};
use wacore_libsignal::protocol::{CurveError, KeyPair};
use waproto::whatsapp::{self as wa, cert_chain::noise_certificate};

/// WhatsApp clients require the intermediate certificate to be issued by
/// serial 0 (the root).
const ROOT_SERIAL: u32 = 0;
const INTERMEDIATE_SERIAL: u32 = 1;
const LEAF_SERIAL: u32 = 2;
/// Clients refuse IK when the clock is outside a certificate's window, so the
/// window is wide on both sides of "now" to survive clock skew in CI.
const VALIDITY_BEFORE_SECS: u64 = 24 * 3600;
const VALIDITY_AFTER_SECS: u64 = 365 * 24 * 3600;

/// Key material the Noise responder needs, generated fresh per server.
pub struct ServerIdentity {
    root: KeyPair,
    /// The Noise static key pair; the leaf certificate certifies its public half.
    pub static_key: KeyPair,
    /// Encoded `CertChain` protobuf sent (encrypted) in every ServerHello.
    pub cert_chain: Vec<u8>,
}

impl ServerIdentity {
    /// Generates a root, an intermediate and a static key, and signs the chain.
    pub fn generate() -> Result<Self, CurveError> {
        let mut rng = rand::rng();
        let root = KeyPair::generate(&mut rng);
        let intermediate = KeyPair::generate(&mut rng);
        let static_key = KeyPair::generate(&mut rng);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let not_before = now.saturating_sub(VALIDITY_BEFORE_SECS);
        let not_after = now + VALIDITY_AFTER_SECS;

        let intermediate_details = noise_certificate::Details {
            serial: Some(INTERMEDIATE_SERIAL),
            issuer_serial: Some(ROOT_SERIAL),
            key: Some(intermediate.public_key.public_key_bytes().to_vec()),
            not_before: Some(not_before),
            not_after: Some(not_after),
        }
        .encode_to_vec();
        let intermediate_sig = root
            .private_key
            .calculate_signature(&intermediate_details, &mut rng)?;

        let leaf_details = noise_certificate::Details {
            serial: Some(LEAF_SERIAL),
            issuer_serial: Some(INTERMEDIATE_SERIAL),
            key: Some(static_key.public_key.public_key_bytes().to_vec()),
            not_before: Some(not_before),
            not_after: Some(not_after),
        }
        .encode_to_vec();
        let leaf_sig = intermediate
            .private_key
            .calculate_signature(&leaf_details, &mut rng)?;

        let cert_chain = wa::CertChain {
            leaf: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
                details: Some(leaf_details),
                signature: Some(leaf_sig.to_vec()),
            }),
            intermediate: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
                details: Some(intermediate_details),
                signature: Some(intermediate_sig.to_vec()),
            }),
        }
        .encode_to_vec();

        Ok(Self {
            root,
            static_key,
            cert_chain,
        })
    }

    /// The root public key (32 bytes, Curve25519) that signs the intermediate.
    pub fn root_public(&self) -> [u8; 32] {
        key32(self.root.public_key.public_key_bytes())
    }

    /// The Noise static public key clients cache for IK.
    pub fn static_public(&self) -> [u8; 32] {
        key32(self.static_key.public_key.public_key_bytes())
    }
}

/// Curve25519 public keys from libsignal are always 32 bytes; this copies
/// them into a fixed array (zero-padded if that invariant were ever broken).
pub fn key32(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_libsignal::protocol::PublicKey;

    #[test]
    fn chain_is_xeddsa_signed_by_root_and_certifies_static_key() {
        let id = ServerIdentity::generate().expect("generate identity");
        let chain = wa::CertChain::decode_from_slice(&id.cert_chain).expect("decode chain");
        let inter = chain.intermediate.into_option().expect("intermediate");
        let leaf = chain.leaf.into_option().expect("leaf");
        let inter_details_bytes = inter.details.expect("intermediate details");
        let inter_details = noise_certificate::Details::decode_from_slice(&inter_details_bytes)
            .expect("decode intermediate details");
        assert_eq!(inter_details.issuer_serial, Some(0));

        let root = PublicKey::from_djb_public_key_bytes(&id.root_public()).expect("root key");
        let inter_sig = inter.signature.expect("intermediate signature");
        assert!(root.verify_signature(&inter_details_bytes, &inter_sig));
        let mut tampered = inter_details_bytes.clone();
        tampered[0] ^= 1;
        assert!(!root.verify_signature(&tampered, &inter_sig));

        let inter_key = PublicKey::from_djb_public_key_bytes(
            inter_details.key.as_deref().expect("intermediate key"),
        )
        .expect("intermediate key parses");
        let leaf_details_bytes = leaf.details.expect("leaf details");
        let leaf_details = noise_certificate::Details::decode_from_slice(&leaf_details_bytes)
            .expect("decode leaf details");
        assert!(inter_key.verify_signature(
            &leaf_details_bytes,
            &leaf.signature.expect("leaf signature")
        ));
        assert_eq!(leaf_details.key.as_deref(), Some(&id.static_public()[..]));
        assert_eq!(leaf_details.issuer_serial, inter_details.serial);
    }
}
