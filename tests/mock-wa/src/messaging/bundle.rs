//! A prekey bundle as the server stores and publishes it, and its wire forms.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, NodeContent};
use wacore_libsignal::protocol::{
    DeviceId, IdentityKey, PreKeyBundle, PreKeyId, PublicKey, SignedPreKeyId,
};

use super::MessagingError;

/// Key type byte WhatsApp puts in `<type>`: Curve25519 ("DJB").
const KEY_TYPE_DJB: u8 = 5;

/// One device's published keys: what a prekey fetch hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub registration_id: u32,
    pub identity: [u8; 32],
    pub signed_id: u32,
    pub signed_public: [u8; 32],
    pub signed_signature: Vec<u8>,
    pub prekey: Option<(u32, [u8; 32])>,
}

/// WhatsApp carries key ids as 3 big-endian bytes.
pub fn id_to_3_bytes(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}

pub fn id_from_bytes(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

pub fn key_32(bytes: &[u8]) -> Option<[u8; 32]> {
    match bytes.len() {
        32 => bytes.try_into().ok(),
        // A serialized Signal public key carries a leading type byte.
        33 if bytes[0] == KEY_TYPE_DJB => bytes[1..].try_into().ok(),
        _ => None,
    }
}

pub fn child_bytes<'a>(node: &'a Node, tag: &str) -> Option<&'a [u8]> {
    match &node.get_optional_child(tag)?.content {
        Some(NodeContent::Bytes(b)) => Some(b.as_slice()),
        _ => None,
    }
}

impl Bundle {
    /// The `<user>` element of a prekey fetch answer.
    pub fn to_user_node(&self, jid: &Jid) -> Node {
        let mut children = vec![
            NodeBuilder::new("registration")
                .bytes(self.registration_id.to_be_bytes().to_vec())
                .build(),
            NodeBuilder::new("type").bytes(vec![KEY_TYPE_DJB]).build(),
            NodeBuilder::new("identity")
                .bytes(self.identity.to_vec())
                .build(),
            self.signed_node(),
        ];
        if let Some(key) = self.prekey_node() {
            children.push(key);
        }
        NodeBuilder::new("user")
            .attr("jid", jid.clone())
            .children(children)
            .build()
    }

    /// The `<keys>` element of a retry receipt.
    pub fn to_keys_node(&self) -> Node {
        let mut children = vec![
            NodeBuilder::new("type").bytes(vec![KEY_TYPE_DJB]).build(),
            NodeBuilder::new("identity")
                .bytes(self.identity.to_vec())
                .build(),
        ];
        if let Some(key) = self.prekey_node() {
            children.push(key);
        }
        children.push(self.signed_node());
        NodeBuilder::new("keys").children(children).build()
    }

    fn signed_node(&self) -> Node {
        NodeBuilder::new("skey")
            .children([
                NodeBuilder::new("id")
                    .bytes(id_to_3_bytes(self.signed_id))
                    .build(),
                NodeBuilder::new("value")
                    .bytes(self.signed_public.to_vec())
                    .build(),
                NodeBuilder::new("signature")
                    .bytes(self.signed_signature.clone())
                    .build(),
            ])
            .build()
    }

    fn prekey_node(&self) -> Option<Node> {
        let (id, public) = self.prekey?;
        Some(
            NodeBuilder::new("key")
                .children([
                    NodeBuilder::new("id").bytes(id_to_3_bytes(id)).build(),
                    NodeBuilder::new("value").bytes(public.to_vec()).build(),
                ])
                .build(),
        )
    }

    /// The libsignal form, to start a session with this device.
    pub fn to_libsignal(&self, device_id: u16) -> Result<PreKeyBundle, MessagingError> {
        let public = |bytes: &[u8; 32]| {
            PublicKey::from_djb_public_key_bytes(bytes)
                .map_err(|e| MessagingError::BadKey(e.to_string()))
        };
        let prekey = match self.prekey {
            Some((id, key)) => Some((PreKeyId::from(id), public(&key)?)),
            None => None,
        };
        PreKeyBundle::new(
            self.registration_id,
            DeviceId::from(u32::from(device_id)),
            prekey,
            SignedPreKeyId::from(self.signed_id),
            public(&self.signed_public)?,
            self.signed_signature.clone(),
            IdentityKey::new(public(&self.identity)?),
        )
        .map_err(MessagingError::Signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_travel_as_three_bytes() {
        assert_eq!(id_to_3_bytes(0x00AB_CDEF), vec![0xAB, 0xCD, 0xEF]);
        assert_eq!(id_from_bytes(&[0xAB, 0xCD, 0xEF]), Some(0x00AB_CDEF));
        assert_eq!(id_from_bytes(&[]), None);
    }

    #[test]
    fn keys_accept_both_raw_and_typed_forms() {
        let raw = [7u8; 32];
        let mut typed = vec![KEY_TYPE_DJB];
        typed.extend_from_slice(&raw);
        assert_eq!(key_32(&raw), Some(raw));
        assert_eq!(key_32(&typed), Some(raw));
        assert_eq!(key_32(&[1, 2, 3]), None);
    }
}
