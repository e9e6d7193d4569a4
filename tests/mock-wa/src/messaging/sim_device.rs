//! A simulated contact device: real Signal keys, a server-side pool of
//! published one-time prekeys, and its own Signal store.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use wacore_libsignal::protocol::{
    CiphertextMessage, CiphertextMessageType, DeviceId, GenericSignedPreKey, IdentityKeyPair,
    KeyPair, PreKeyId, PreKeyRecord, PreKeySignalMessage, ProtocolAddress, SignalMessage,
    SignedPreKeyId, SignedPreKeyRecord, Timestamp, UsePQRatchet, message_decrypt_prekey,
    message_decrypt_signal, message_encrypt, process_prekey_bundle,
};
use wacore_libsignal::protocol::{
    PreKeyStore, SenderKeyDistributionMessage, SenderKeyName, SenderKeyStore, SessionStore,
    create_sender_key_distribution_message, group_decrypt, group_encrypt,
    process_sender_key_distribution_message,
};

use super::MessagingError;
use super::bundle::Bundle;
use super::signal_store::SignalStore;

/// One-time prekeys published per refill: enough for a test's handful of
/// new sessions, cheap enough to generate lazily for thousands of contacts.
const PREKEY_BATCH: u32 = 8;
const SIGNED_PREKEY_ID: u32 = 1;

/// `enc type` of a Signal message on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncKind {
    /// PreKeySignalMessage: the first messages of a new session.
    Pkmsg,
    /// SignalMessage: an established session.
    Msg,
}

impl EncKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EncKind::Pkmsg => "pkmsg",
            EncKind::Msg => "msg",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pkmsg" => Some(EncKind::Pkmsg),
            "msg" => Some(EncKind::Msg),
            _ => None,
        }
    }
}

/// The Signal address a device is known by inside one store. Only our own
/// stores read it, so any stable, collision-free name will do.
pub fn address_of(user: &str, server: &str, device: u16) -> ProtocolAddress {
    ProtocolAddress::new(
        &format!("{user}@{server}"),
        DeviceId::from(u32::from(device)),
    )
}

/// FNV-1a: a stable seed from a name, so a contact has the same keys in every
/// run (handy when reading logs) without a hashing dependency.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub struct SimDevice {
    /// The name the keys derive from; also its sender id in groups.
    name: String,
    rng: StdRng,
    store: SignalStore,
    registration_id: u32,
    identity_public: [u8; 32],
    signed_public: [u8; 32],
    signed_signature: Vec<u8>,
    published: VecDeque<(u32, [u8; 32])>,
    next_prekey_id: u32,
}

impl SimDevice {
    /// Keys derive from `name` (e.g. the device JID), so they are stable.
    pub fn new(name: &str) -> Result<Self, MessagingError> {
        let mut rng = StdRng::seed_from_u64(seed_of(name));
        let identity = IdentityKeyPair::generate(&mut rng);
        let registration_id = rng.random_range(1..16_380u32);
        let signed = KeyPair::generate(&mut rng);
        let signed_signature = identity
            .private_key()
            .calculate_signature(&signed.public_key.serialize(), &mut rng)
            .map_err(|e| MessagingError::BadKey(e.to_string()))?
            .to_vec();
        let record = SignedPreKeyRecord::new(
            SignedPreKeyId::from(SIGNED_PREKEY_ID),
            Timestamp::from_epoch_millis(0),
            &signed,
            &signed_signature,
        );
        let mut store = SignalStore::new(identity.clone(), registration_id);
        store.signed_prekeys.insert(SIGNED_PREKEY_ID, record);
        let signed_public = public_32(&signed.public_key);
        Ok(Self {
            name: name.to_owned(),
            rng,
            store,
            registration_id,
            identity_public: public_32(identity.public_key()),
            signed_public,
            signed_signature,
            published: VecDeque::new(),
            next_prekey_id: 1,
        })
    }

    fn refill(&mut self) {
        for _ in 0..PREKEY_BATCH {
            let id = self.next_prekey_id;
            self.next_prekey_id += 1;
            let pair = KeyPair::generate(&mut self.rng);
            self.store
                .prekeys
                .insert(id, PreKeyRecord::new(PreKeyId::from(id), &pair));
            self.published.push_back((id, public_32(&pair.public_key)));
        }
    }

    /// The bundle a prekey fetch returns; each fetch hands out (and so
    /// uses up) one one-time prekey, as the real server does.
    pub fn take_bundle(&mut self) -> Bundle {
        if self.published.is_empty() {
            self.refill();
        }
        Bundle {
            registration_id: self.registration_id,
            identity: self.identity_public,
            signed_id: SIGNED_PREKEY_ID,
            signed_public: self.signed_public,
            signed_signature: self.signed_signature.clone(),
            prekey: self.published.pop_front(),
        }
    }

    /// Drops the session with `peer`, e.g. after it re-paired with new keys.
    pub fn forget_session(&mut self, peer: &ProtocolAddress) {
        self.store.sessions.remove(peer);
    }

    pub fn forget_all_sessions(&mut self) {
        self.store.sessions.clear();
    }

    pub async fn has_session(&self, peer: &ProtocolAddress) -> bool {
        matches!(self.store.sessions.has_session(peer).await, Ok(true))
    }

    /// Decrypt one `<enc>` payload a peer sent to this device.
    pub async fn decrypt(
        &mut self,
        peer: &ProtocolAddress,
        kind: EncKind,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, MessagingError> {
        let store = &mut self.store;
        match kind {
            EncKind::Pkmsg => {
                let message = PreKeySignalMessage::try_from(ciphertext)?;
                let result = message_decrypt_prekey(
                    &message,
                    peer,
                    &mut store.sessions,
                    &mut store.identities,
                    &mut store.prekeys,
                    &store.signed_prekeys,
                    &mut self.rng,
                    UsePQRatchet::No,
                )
                .await?;
                // The library leaves deleting a used one-time prekey to its
                // caller; our session is "durable" as soon as it is stored.
                if let Some(id) = result.consumed_prekey_id {
                    store.prekeys.remove_pre_key(id).await?;
                }
                Ok(result.plaintext)
            }
            EncKind::Msg => {
                let message = SignalMessage::try_from(ciphertext)?;
                let result = message_decrypt_signal(
                    &message,
                    peer,
                    &mut store.sessions,
                    &mut store.identities,
                    &mut self.rng,
                )
                .await?;
                Ok(result.plaintext)
            }
        }
    }

    /// Encrypt for `peer`, starting a session from `bundle` when there is
    /// none yet. Fails with [`MessagingError::NoSession`] when a session is
    /// needed and no bundle was given.
    pub async fn encrypt(
        &mut self,
        peer: &ProtocolAddress,
        bundle: Option<&Bundle>,
        plaintext: &[u8],
    ) -> Result<(EncKind, Vec<u8>), MessagingError> {
        if !self.has_session(peer).await {
            let bundle = bundle.ok_or_else(|| MessagingError::NoSession(peer.to_string()))?;
            let device = u16::try_from(u32::from(peer.device_id())).unwrap_or(0);
            process_prekey_bundle(
                peer,
                &mut self.store.sessions,
                &mut self.store.identities,
                &bundle.to_libsignal(device)?,
                &mut self.rng,
                UsePQRatchet::No,
            )
            .await?;
        }
        let message = message_encrypt(
            plaintext,
            peer,
            &mut self.store.sessions,
            &mut self.store.identities,
        )
        .await?;
        Ok(ciphertext_parts(&message))
    }
}

/// Groups: the device's own sender key per group (distributed to members
/// in a `SenderKeyDistributionMessage`) and the keys members sent it.
impl SimDevice {
    fn own_sender_key(&self, group: &str) -> SenderKeyName {
        SenderKeyName::from_parts(group, &self.name)
    }

    /// The serialized distribution message of this device's key for `group`
    /// (created on first use), at the chain's current iteration.
    pub async fn sender_key_distribution(
        &mut self,
        group: &str,
    ) -> Result<Vec<u8>, MessagingError> {
        let name = self.own_sender_key(group);
        let skdm = create_sender_key_distribution_message(
            &name,
            &mut self.store.sender_keys,
            &mut self.rng,
        )
        .await?;
        Ok(skdm.serialized().to_vec())
    }

    /// `skmsg` ciphertext of `plaintext` under this device's key for `group`.
    pub async fn group_encrypt(
        &mut self,
        group: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, MessagingError> {
        let name = self.own_sender_key(group);
        let message =
            group_encrypt(&mut self.store.sender_keys, &name, plaintext, &mut self.rng).await?;
        Ok(message.serialized().to_vec())
    }

    /// Takes in the sender key `sender` distributed for `group`.
    pub async fn accept_sender_key(
        &mut self,
        group: &str,
        sender: &ProtocolAddress,
        skdm: &[u8],
    ) -> Result<(), MessagingError> {
        let skdm = SenderKeyDistributionMessage::try_from(skdm)?;
        let name = SenderKeyName::from_parts(group, &sender.to_string());
        process_sender_key_distribution_message(&name, &skdm, &mut self.store.sender_keys).await?;
        Ok(())
    }

    /// Whether `sender` has distributed its key for `group` to this device.
    pub async fn has_sender_key(&self, group: &str, sender: &ProtocolAddress) -> bool {
        let name = SenderKeyName::from_parts(group, &sender.to_string());
        matches!(
            self.store.sender_keys.load_sender_key(&name).await,
            Ok(Some(_))
        )
    }

    /// Decrypts an `skmsg` `sender` posted to `group`.
    pub async fn group_decrypt(
        &mut self,
        group: &str,
        sender: &ProtocolAddress,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, MessagingError> {
        let name = SenderKeyName::from_parts(group, &sender.to_string());
        Ok(group_decrypt(ciphertext, &mut self.store.sender_keys, &name).await?)
    }
}

fn ciphertext_parts(message: &CiphertextMessage) -> (EncKind, Vec<u8>) {
    let kind = match message.message_type() {
        CiphertextMessageType::PreKey => EncKind::Pkmsg,
        _ => EncKind::Msg,
    };
    (kind, message.serialize().to_vec())
}

fn public_32(key: &wacore_libsignal::protocol::PublicKey) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(key.public_key_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::signal_store::SignalStore;

    fn alice() -> (SignalStore, IdentityKeyPair, StdRng) {
        let mut rng = StdRng::seed_from_u64(42);
        let identity = IdentityKeyPair::generate(&mut rng);
        (SignalStore::new(identity.clone(), 77), identity, rng)
    }

    #[test]
    fn keys_are_deterministic_per_name() {
        let a = SimDevice::new("15551234567@s.whatsapp.net").expect("device");
        let b = SimDevice::new("15551234567@s.whatsapp.net").expect("device");
        let c = SimDevice::new("15557654321@s.whatsapp.net").expect("device");
        assert_eq!(a.identity_public, b.identity_public);
        assert_ne!(a.identity_public, c.identity_public);
    }

    #[test]
    fn each_fetch_hands_out_a_different_prekey_with_a_valid_signature() {
        let mut dev = SimDevice::new("1@s.whatsapp.net").expect("device");
        let first = dev.take_bundle();
        let second = dev.take_bundle();
        assert_ne!(first.prekey, second.prekey);
        let identity =
            wacore_libsignal::protocol::PublicKey::from_djb_public_key_bytes(&first.identity)
                .expect("identity");
        let signed =
            wacore_libsignal::protocol::PublicKey::from_djb_public_key_bytes(&first.signed_public)
                .expect("signed");
        assert!(identity.verify_signature(&signed.serialize(), &first.signed_signature));
        for _ in 0..(PREKEY_BATCH * 2) {
            assert!(dev.take_bundle().prekey.is_some(), "pool refills itself");
        }
    }

    /// The client side here is wacore-libsignal's own session building and
    /// encryption, as whatsapp-rust uses it.
    #[tokio::test]
    async fn decrypts_what_a_library_client_encrypts_and_answers_back() {
        let mut contact = SimDevice::new("15551234567@s.whatsapp.net").expect("device");
        let contact_addr = address_of("15551234567", "s.whatsapp.net", 0);
        let client_addr = address_of("15550000001", "s.whatsapp.net", 3);
        let (mut client, _, mut rng) = alice();

        let bundle = contact.take_bundle().to_libsignal(0).expect("bundle");
        process_prekey_bundle(
            &contact_addr,
            &mut client.sessions,
            &mut client.identities,
            &bundle,
            &mut rng,
            UsePQRatchet::No,
        )
        .await
        .expect("client builds a session");

        for (i, text) in ["hello", "again"].iter().enumerate() {
            let ct = message_encrypt(
                text.as_bytes(),
                &contact_addr,
                &mut client.sessions,
                &mut client.identities,
            )
            .await
            .expect("client encrypts");
            let (kind, bytes) = ciphertext_parts(&ct);
            assert_eq!(kind, EncKind::Pkmsg, "message {i} before any reply");
            let plain = contact
                .decrypt(&client_addr, kind, &bytes)
                .await
                .expect("contact decrypts");
            assert_eq!(plain, text.as_bytes());
        }

        let (kind, reply) = contact
            .encrypt(&client_addr, None, b"reply")
            .await
            .expect("contact answers on the session");
        assert_eq!(kind, EncKind::Msg);
        let reply = SignalMessage::try_from(reply.as_slice()).expect("signal message");
        let plain = message_decrypt_signal(
            &reply,
            &contact_addr,
            &mut client.sessions,
            &mut client.identities,
            &mut rng,
        )
        .await
        .expect("client decrypts reply");
        assert_eq!(plain.plaintext, b"reply");
    }

    #[tokio::test]
    async fn starts_a_session_from_an_uploaded_bundle() {
        let mut contact = SimDevice::new("15551234567@s.whatsapp.net").expect("device");
        let contact_addr = address_of("15551234567", "s.whatsapp.net", 0);
        let client_addr = address_of("15550000001", "s.whatsapp.net", 3);
        let (mut client, identity, mut rng) = alice();

        // What the client would upload: its identity, a signed prekey and
        // one one-time prekey.
        let signed = KeyPair::generate(&mut rng);
        let sig = identity
            .private_key()
            .calculate_signature(&signed.public_key.serialize(), &mut rng)
            .expect("sign");
        client.signed_prekeys.insert(
            9,
            SignedPreKeyRecord::new(
                SignedPreKeyId::from(9),
                Timestamp::from_epoch_millis(0),
                &signed,
                &sig,
            ),
        );
        let one = KeyPair::generate(&mut rng);
        client
            .prekeys
            .insert(5, PreKeyRecord::new(PreKeyId::from(5), &one));
        let uploaded = Bundle {
            registration_id: 77,
            identity: public_32(identity.public_key()),
            signed_id: 9,
            signed_public: public_32(&signed.public_key),
            signed_signature: sig.to_vec(),
            prekey: Some((5, public_32(&one.public_key))),
        };

        assert!(matches!(
            contact.encrypt(&client_addr, None, b"x").await,
            Err(MessagingError::NoSession(_))
        ));
        let (kind, bytes) = contact
            .encrypt(&client_addr, Some(&uploaded), b"from contact")
            .await
            .expect("contact encrypts");
        assert_eq!(kind, EncKind::Pkmsg);
        let message = PreKeySignalMessage::try_from(bytes.as_slice()).expect("pkmsg");
        let plain = message_decrypt_prekey(
            &message,
            &contact_addr,
            &mut client.sessions,
            &mut client.identities,
            &mut client.prekeys,
            &client.signed_prekeys,
            &mut rng,
            UsePQRatchet::No,
        )
        .await
        .expect("client decrypts");
        assert_eq!(plain.plaintext, b"from contact");
    }
}
