//! The Signal-messaging side of the mock: simulated contacts with real
//! Signal keys, the `encrypt` and `usync` IQs, decryption of what a client
//! sends, contact-to-account messages with an offline queue, and receipts.
//!
//! The server core hands this module the stanzas of logged-in devices
//! ([`Messaging::handle_iq`], [`Messaging::handle_message`],
//! [`Messaging::handle_receipt`], [`Messaging::handle_ack`]) and asks it for
//! a device's backlog at login ([`Messaging::backlog`]), through
//! [`SignalHandlers`], its [`crate::StanzaHandlers`] implementation. Every
//! entry point takes a [`ServerView`]: the core's accounts and connections.

mod addressing;
mod admin;
mod bundle;
mod directory;
mod encrypt_iq;
mod groups;
mod hub;
mod inbound;
mod key_share;
mod media_msg;
mod outbound;
mod retry;
mod signal_handlers;
mod signal_store;
mod sim_device;
mod stanza;
mod stats;
#[cfg(test)]
mod tests;
mod usync_iq;

pub use addressing::{Addressing, push_name};
pub use admin::AdminReply;
pub use directory::{AccountDevices, CompanionDevice, ServerView};
pub use groups::{Group, GroupError};
pub use hub::{InboxEntry, Messaging, MessagingConfig, ReceiptKind};
pub use key_share::{AppStateKey, app_state_keys};
pub use media_msg::{MediaContent, MediaRequest, MediaRequestError, MediaSummary};
pub use signal_handlers::SignalHandlers;
pub use stats::MessagingStats;

use wacore_libsignal::protocol::SignalProtocolError;

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("signal protocol: {0}")]
    Signal(#[from] SignalProtocolError),
    #[error("invalid key material: {0}")]
    BadKey(String),
    #[error("no Signal session with {0} and no prekey bundle to start one")]
    NoSession(String),
    #[error(
        "{0:?} is not a phone number or user JID; pass digits like 15551234567 or a JID like 15551234567@s.whatsapp.net"
    )]
    BadAddress(String),
    #[error(
        "account {0} has no known device; pair a device (and let it log in once) before delivering to it"
    )]
    NoDevices(String),
    #[error("message text is empty; give a non-empty text")]
    EmptyText,
    #[error(
        "this server was started without the messaging side; use MockServer::start or start_with_messaging"
    )]
    NotEnabled,
    #[error("{0}")]
    Media(#[from] MediaRequestError),
    #[error("{0}")]
    Group(#[from] GroupError),
    #[error("decoded plaintext is not a WhatsApp message: {0}")]
    BadPlaintext(String),
}
