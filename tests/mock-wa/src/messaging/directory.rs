//! What the messaging side needs from the server core: which accounts and
//! companion devices exist (the core pairs them) and a way to reach a
//! logged-in device.

use wacore_binary::{Jid, Node};

/// A companion device of an account and the ADV key index it was paired with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompanionDevice {
    pub device: u16,
    pub key_index: u32,
}

/// An account's companion devices as the core's device registry knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountDevices {
    /// `raw_id` of the account's ADV key index list; clients treat a change
    /// as an identity change and drop sessions, so it must stay stable.
    pub raw_id: u32,
    pub companions: Vec<CompanionDevice>,
}

/// The server core as the messaging side sees it.
pub trait ServerView: Send + Sync {
    /// The account whose phone number is `phone`, if the core paired any
    /// device for it; `None` makes `phone` a plain simulated contact.
    fn account(&self, phone: &str) -> Option<AccountDevices>;

    /// The phone number (account or contact) whose LID user is `lid_user`.
    fn phone_of_lid(&self, lid_user: &str) -> Option<String>;

    /// The LID user of phone number `phone`; every number has one.
    fn lid_of(&self, phone: &str) -> String;

    /// Sends `node` to logged-in device `device`; `false` if it is offline.
    fn push(&self, device: &Jid, node: Node) -> bool;

    /// The media host's store, where contacts put their media and clients'
    /// uploads are found.
    fn media(&self) -> Option<&crate::media::MediaStore> {
        None
    }
}

/// A stable ADV `raw_id` per account (clients reset a user's devices when
/// it changes between two device-list answers).
pub(super) fn raw_id_of(phone: &str) -> u32 {
    phone.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
