//! Noise responder for the WhatsApp handshake patterns (XX, IK and the
//! XXfallback used when IK cannot be accepted), plus the transport cipher
//! pair used after it. Pure byte-in/byte-out so it can be tested against the
//! client-side state machines of `wacore-noise` without a socket.

use crate::cert::{ServerIdentity, key32};
use buffa::Message as _;
use thiserror::Error;
use wacore_binary::consts::{NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK};
use wacore_libsignal::protocol::KeyPair;
use wacore_noise::{HandshakeError, NoiseCipher, NoiseHandshake};
use waproto::whatsapp::{self as wa, HandshakeMessage};

#[derive(Debug, Error)]
pub enum NoiseServerError {
    #[error("handshake message is not a valid HandshakeMessage protobuf: {0}")]
    Decode(#[from] buffa::DecodeError),
    #[error("handshake message lacks {0}")]
    Missing(&'static str),
    #[error("{0} is not a 32-byte key")]
    BadKey(&'static str),
    #[error("noise operation failed: {0}")]
    Noise(#[from] HandshakeError),
    #[error("transport cipher failed: {0}")]
    Cipher(#[from] wacore_noise::NoiseError),
    #[error("noise counter exhausted; the connection must be re-established")]
    CounterExhausted,
}

pub type Result<T> = std::result::Result<T, NoiseServerError>;

/// What the client opened with.
pub enum ClientHello {
    /// Ephemeral only: full XX.
    Xx { ephemeral: [u8; 32] },
    /// Ephemeral plus encrypted static and 0-RTT payload: IK.
    Ik {
        ephemeral: [u8; 32],
        encrypted_static: Vec<u8>,
        encrypted_payload: Vec<u8>,
    },
}

impl ClientHello {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let msg = HandshakeMessage::decode_from_slice(bytes)?;
        let hello = msg
            .client_hello
            .into_option()
            .ok_or(NoiseServerError::Missing("clientHello"))?;
        let ephemeral = to_key(
            hello
                .ephemeral
                .ok_or(NoiseServerError::Missing("clientHello.ephemeral"))?,
            "client ephemeral",
        )?;
        Ok(match (hello.r#static, hello.payload) {
            (Some(encrypted_static), Some(encrypted_payload)) => ClientHello::Ik {
                ephemeral,
                encrypted_static,
                encrypted_payload,
            },
            _ => ClientHello::Xx { ephemeral },
        })
    }
}

/// Transport ciphers after a completed handshake, seen from the server.
/// Counters are per direction and start at zero, as in the client.
pub struct NoiseTransport {
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl NoiseTransport {
    fn from_handshake(noise: NoiseHandshake) -> Result<Self> {
        // `finish` names the keys from the initiator's side: the client
        // writes with the first and reads with the second.
        let (client_write, client_read) = noise.finish()?;
        Ok(Self {
            read: client_write,
            write: client_read,
            read_counter: 0,
            write_counter: 0,
        })
    }

    /// Encrypts one frame payload for the client.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let counter = self.write_counter;
        self.write_counter = counter
            .checked_add(1)
            .ok_or(NoiseServerError::CounterExhausted)?;
        Ok(self.write.encrypt_with_counter(counter, plaintext)?)
    }

    /// Decrypts one frame payload from the client.
    pub fn decrypt(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let counter = self.read_counter;
        self.read_counter = counter
            .checked_add(1)
            .ok_or(NoiseServerError::CounterExhausted)?;
        let mut buf = ciphertext.to_vec();
        self.read.decrypt_in_place_with_counter(counter, &mut buf)?;
        Ok(buf)
    }
}

/// Server half of XX (or XXfallback) after the ServerHello went out.
pub struct PendingXx {
    noise: NoiseHandshake,
    ephemeral: KeyPair,
}

/// Result of a completed handshake: who the client is and what it said.
pub struct Completed {
    pub client_static: [u8; 32],
    /// The decrypted, still protobuf-encoded `ClientPayload`.
    pub payload: Vec<u8>,
    pub transport: NoiseTransport,
}

/// Starts XX, or XXfallback when `fallback` is set (the client's ephemeral is
/// reused from its rejected IK hello). Returns the ServerHello bytes.
pub fn start_xx(
    identity: &ServerIdentity,
    prologue: &[u8],
    client_ephemeral: &[u8; 32],
    fallback: bool,
) -> Result<(Vec<u8>, PendingXx)> {
    let pattern = if fallback {
        NOISE_PATTERN_XXFALLBACK
    } else {
        NOISE_PATTERN_XX
    };
    let mut noise = NoiseHandshake::new(pattern, prologue)?;
    noise.authenticate(client_ephemeral);
    let ephemeral = KeyPair::generate(&mut rand::rng());
    let eph_pub = key32(ephemeral.public_key.public_key_bytes());
    noise.authenticate(&eph_pub);
    // ee
    noise.mix_shared_secret(ephemeral.private_key.serialize(), client_ephemeral)?;
    let encrypted_static = noise.encrypt(&identity.static_public())?;
    // es
    noise.mix_shared_secret(
        identity.static_key.private_key.serialize(),
        client_ephemeral,
    )?;
    let encrypted_cert = noise.encrypt(&identity.cert_chain)?;
    let hello = server_hello(eph_pub, Some(encrypted_static), encrypted_cert);
    Ok((hello, PendingXx { noise, ephemeral }))
}

impl PendingXx {
    /// Consumes the ClientFinish and derives the transport keys.
    pub fn finish(mut self, client_finish: &[u8]) -> Result<Completed> {
        let msg = HandshakeMessage::decode_from_slice(client_finish)?;
        let finish = msg
            .client_finish
            .into_option()
            .ok_or(NoiseServerError::Missing("clientFinish"))?;
        let enc_static = finish
            .r#static
            .ok_or(NoiseServerError::Missing("clientFinish.static"))?;
        let enc_payload = finish
            .payload
            .ok_or(NoiseServerError::Missing("clientFinish.payload"))?;
        let client_static = to_key(self.noise.decrypt(&enc_static)?, "client static")?;
        // se
        self.noise
            .mix_shared_secret(self.ephemeral.private_key.serialize(), &client_static)?;
        let payload = self.noise.decrypt(&enc_payload)?;
        Ok(Completed {
            client_static,
            payload,
            transport: NoiseTransport::from_handshake(self.noise)?,
        })
    }
}

/// An IK hello whose static and payload decrypted under our static key. The
/// caller decides whether it knows the client before accepting.
pub struct PendingIk {
    noise: NoiseHandshake,
    client_ephemeral: [u8; 32],
    pub client_static: [u8; 32],
    pub payload: Vec<u8>,
}

/// Reads an IK ClientHello. `None` means the client encrypted to a static key
/// that is not ours (for example one cached from an earlier mock process), so
/// the caller must answer with XXfallback.
pub fn read_ik(
    identity: &ServerIdentity,
    prologue: &[u8],
    client_ephemeral: &[u8; 32],
    encrypted_static: &[u8],
    encrypted_payload: &[u8],
) -> Result<Option<PendingIk>> {
    let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, prologue)?;
    noise.authenticate(&identity.static_public());
    noise.authenticate(client_ephemeral);
    let static_priv = identity.static_key.private_key.serialize();
    // es
    noise.mix_shared_secret(static_priv, client_ephemeral)?;
    let Ok(client_static) = noise.decrypt(encrypted_static) else {
        return Ok(None);
    };
    let client_static = to_key(client_static, "client static")?;
    // ss
    noise.mix_shared_secret(static_priv, &client_static)?;
    let Ok(payload) = noise.decrypt(encrypted_payload) else {
        return Ok(None);
    };
    Ok(Some(PendingIk {
        noise,
        client_ephemeral: *client_ephemeral,
        client_static,
        payload,
    }))
}

impl PendingIk {
    /// Accepts IK: returns the ServerHello bytes and the finished handshake.
    pub fn accept(mut self, identity: &ServerIdentity) -> Result<(Vec<u8>, Completed)> {
        let ephemeral = KeyPair::generate(&mut rand::rng());
        let eph_pub = key32(ephemeral.public_key.public_key_bytes());
        self.noise.authenticate(&eph_pub);
        // ee
        self.noise
            .mix_shared_secret(ephemeral.private_key.serialize(), &self.client_ephemeral)?;
        // se
        self.noise
            .mix_shared_secret(ephemeral.private_key.serialize(), &self.client_static)?;
        let encrypted_cert = self.noise.encrypt(&identity.cert_chain)?;
        let hello = server_hello(eph_pub, None, encrypted_cert);
        Ok((
            hello,
            Completed {
                client_static: self.client_static,
                payload: self.payload,
                transport: NoiseTransport::from_handshake(self.noise)?,
            },
        ))
    }
}

fn server_hello(
    ephemeral: [u8; 32],
    encrypted_static: Option<Vec<u8>>,
    payload: Vec<u8>,
) -> Vec<u8> {
    HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral.to_vec()),
            r#static: encrypted_static,
            payload: Some(payload),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn to_key(bytes: Vec<u8>, what: &'static str) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| NoiseServerError::BadKey(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_binary::consts::WA_CONN_HEADER;
    use wacore_noise::{
        IkHandshakeState, IkServerHelloOutcome, XxFallbackHandshakeState, XxHandshakeState,
    };

    fn roundtrip(
        server: &mut NoiseTransport,
        client_write: &NoiseCipher,
        client_read: &NoiseCipher,
    ) {
        let from_client = client_write
            .encrypt_with_counter(0, b"ping")
            .expect("client enc");
        assert_eq!(server.decrypt(&from_client).expect("server dec"), b"ping");
        let from_server = server.encrypt(b"pong").expect("server enc");
        let mut buf = from_server.clone();
        client_read
            .decrypt_in_place_with_counter(0, &mut buf)
            .expect("client dec");
        assert_eq!(buf, b"pong");
    }

    #[test]
    fn xx_handshake_with_wacore_client() {
        let id = ServerIdentity::generate().expect("identity");
        let client_static = KeyPair::generate(&mut rand::rng());
        let mut client =
            XxHandshakeState::new(client_static.clone(), b"payload".to_vec(), &WA_CONN_HEADER)
                .expect("client");
        let hello =
            ClientHello::parse(&client.build_client_hello().expect("hello")).expect("parse");
        let ClientHello::Xx { ephemeral } = hello else {
            panic!("expected an XX hello");
        };
        let (server_hello, pending) =
            start_xx(&id, &WA_CONN_HEADER, &ephemeral, false).expect("xx");
        let finish = client
            .read_server_hello_and_build_client_finish(&server_hello)
            .expect("client finish");
        let mut done = pending.finish(&finish).expect("server finish");
        assert_eq!(done.payload, b"payload");
        assert_eq!(
            &done.client_static[..],
            client_static.public_key.public_key_bytes()
        );
        let outcome = client.finish().expect("client outcome");
        assert_eq!(outcome.server_cert_chain.leaf_key, id.static_public());
        roundtrip(
            &mut done.transport,
            &outcome.write_cipher,
            &outcome.read_cipher,
        );
    }

    #[test]
    fn ik_accepted_and_rejected_with_fallback() {
        let id = ServerIdentity::generate().expect("identity");
        let client_static = KeyPair::generate(&mut rand::rng());

        let mut client = IkHandshakeState::new(
            client_static.clone(),
            id.static_public(),
            b"login".to_vec(),
            &WA_CONN_HEADER,
        )
        .expect("ik client");
        let ClientHello::Ik {
            ephemeral,
            encrypted_static,
            encrypted_payload,
        } = ClientHello::parse(&client.build_client_hello().expect("hello")).expect("parse")
        else {
            panic!("expected an IK hello");
        };
        let pending = read_ik(
            &id,
            &WA_CONN_HEADER,
            &ephemeral,
            &encrypted_static,
            &encrypted_payload,
        )
        .expect("read ik")
        .expect("ik decrypts under our static");
        assert_eq!(pending.payload, b"login");
        let (server_hello, mut done) = pending.accept(&id).expect("accept");
        let IkServerHelloOutcome::Continue(outcome) = client
            .read_server_hello(&server_hello)
            .expect("client reads hello")
        else {
            panic!("client should continue IK");
        };
        roundtrip(
            &mut done.transport,
            &outcome.write_cipher,
            &outcome.read_cipher,
        );

        // A client holding a stale static (another server's) gets XXfallback.
        let other = ServerIdentity::generate().expect("other identity");
        let mut client = IkHandshakeState::new(
            client_static.clone(),
            other.static_public(),
            b"login2".to_vec(),
            &WA_CONN_HEADER,
        )
        .expect("ik client");
        let ClientHello::Ik {
            ephemeral,
            encrypted_static,
            encrypted_payload,
        } = ClientHello::parse(&client.build_client_hello().expect("hello")).expect("parse")
        else {
            panic!("expected an IK hello");
        };
        assert!(
            read_ik(
                &id,
                &WA_CONN_HEADER,
                &ephemeral,
                &encrypted_static,
                &encrypted_payload
            )
            .expect("read ik")
            .is_none()
        );
        let (server_hello, pending) =
            start_xx(&id, &WA_CONN_HEADER, &ephemeral, true).expect("fallback");
        let IkServerHelloOutcome::Fallback(inputs) = client
            .read_server_hello(&server_hello)
            .expect("client reads hello")
        else {
            panic!("client should fall back");
        };
        let mut fb =
            XxFallbackHandshakeState::from_ik_failure(*inputs, &WA_CONN_HEADER).expect("fb");
        let finish = fb.build_client_finish().expect("fallback finish");
        let mut done = pending.finish(&finish).expect("server finish");
        assert_eq!(done.payload, b"login2");
        let outcome = fb.finish().expect("fb outcome");
        roundtrip(
            &mut done.transport,
            &outcome.write_cipher,
            &outcome.read_cipher,
        );
    }
}
