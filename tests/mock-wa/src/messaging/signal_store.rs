//! In-memory Signal protocol store for one simulated device.
//!
//! libsignal's cipher functions take the session, identity and prekey stores
//! as separate `&mut` arguments, so each store is its own field: callers can
//! borrow them disjointly for one decrypt.

use std::collections::HashMap;

use async_trait::async_trait;
use wacore_libsignal::protocol::{
    Direction, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore, PreKeyId,
    PreKeyRecord, PreKeyStore, ProtocolAddress, SenderKeyName, SenderKeyRecord, SenderKeyStore,
    SessionRecord, SessionStore, SignalProtocolError, SignedPreKeyId, SignedPreKeyRecord,
    SignedPreKeyStore,
};

type SignalResult<T> = Result<T, SignalProtocolError>;

/// Our own identity plus the identities of the peers we have talked to.
pub struct Identities {
    own: IdentityKeyPair,
    registration_id: u32,
    peers: HashMap<ProtocolAddress, IdentityKey>,
}

impl Identities {
    pub fn new(own: IdentityKeyPair, registration_id: u32) -> Self {
        Self {
            own,
            registration_id,
            peers: HashMap::new(),
        }
    }
}

#[async_trait]
impl IdentityKeyStore for Identities {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.own.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let previous = self.peers.insert(address.clone(), *identity);
        Ok(IdentityChange::from_changed(
            previous.is_some_and(|p| p != *identity),
        ))
    }

    /// Trust on every use: a test client re-pairs with fresh keys all the
    /// time, and the real server does not police identities either.
    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.peers.get(address).copied())
    }
}

#[derive(Default)]
pub struct PreKeys(HashMap<u32, PreKeyRecord>);

impl PreKeys {
    pub fn insert(&mut self, id: u32, record: PreKeyRecord) {
        self.0.insert(id, record);
    }
}

#[async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, prekey_id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.0
            .get(&u32::from(prekey_id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(
        &mut self,
        prekey_id: PreKeyId,
        record: &PreKeyRecord,
    ) -> SignalResult<()> {
        self.0.insert(prekey_id.into(), record.clone());
        Ok(())
    }

    async fn remove_pre_key(&mut self, prekey_id: PreKeyId) -> SignalResult<()> {
        self.0.remove(&u32::from(prekey_id));
        Ok(())
    }
}

#[derive(Default)]
pub struct SignedPreKeys(HashMap<u32, SignedPreKeyRecord>);

impl SignedPreKeys {
    pub fn insert(&mut self, id: u32, record: SignedPreKeyRecord) {
        self.0.insert(id, record);
    }
}

#[async_trait]
impl SignedPreKeyStore for SignedPreKeys {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        self.0
            .get(&u32::from(id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidSignedPreKeyId)
    }

    async fn save_signed_pre_key(
        &mut self,
        id: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> SignalResult<()> {
        self.0.insert(id.into(), record.clone());
        Ok(())
    }
}

#[derive(Default)]
pub struct Sessions(HashMap<ProtocolAddress, SessionRecord>);

impl Sessions {
    pub fn remove(&mut self, address: &ProtocolAddress) {
        self.0.remove(address);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[async_trait]
impl SessionStore for Sessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(address).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(address))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.0.insert(address.clone(), record);
        Ok(())
    }
}

/// Group sender keys: the device's own per group, and those its peers
/// distributed to it.
#[derive(Default)]
pub struct SenderKeys(HashMap<SenderKeyName, SenderKeyRecord>);

#[async_trait]
impl SenderKeyStore for SenderKeys {
    async fn store_sender_key(
        &mut self,
        name: &SenderKeyName,
        record: SenderKeyRecord,
    ) -> SignalResult<()> {
        self.0.insert(name.clone(), record);
        Ok(())
    }

    async fn load_sender_key(&self, name: &SenderKeyName) -> SignalResult<Option<SenderKeyRecord>> {
        Ok(self.0.get(name).cloned())
    }
}

/// Every store one simulated device needs.
pub struct SignalStore {
    pub identities: Identities,
    pub prekeys: PreKeys,
    pub signed_prekeys: SignedPreKeys,
    pub sessions: Sessions,
    pub sender_keys: SenderKeys,
}

impl SignalStore {
    pub fn new(own: IdentityKeyPair, registration_id: u32) -> Self {
        Self {
            identities: Identities::new(own, registration_id),
            prekeys: PreKeys::default(),
            signed_prekeys: SignedPreKeys::default(),
            sessions: Sessions::default(),
            sender_keys: SenderKeys::default(),
        }
    }
}
