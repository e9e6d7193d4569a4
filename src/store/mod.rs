//! The store layer: the only place that touches sled and SQLite.
//!
//! [`StateDb`] is the live-state database shared by all accounts; each
//! account gets a [`SledBackend`], the whatsapp-rust `Backend` on its share
//! of the trees: one tree per kind (`state:<kind>`) holds every account's
//! records of that kind, under keys that start with the account's name
//! (length-prefixed), so one account can be wiped, snapshotted, restored
//! or moved without touching another, and the number of trees does not
//! grow with the number of accounts (sled copies its whole list of trees
//! each time one is created). The `accounts` tree lists the accounts.
//!
//! Values are encoded by [`codec`]: one schema-version byte, then bincode 2.
//! Keys are ordered encodings (see `keys.rs`): ids are u32 big-endian,
//! multi-part keys length-prefix each part, so prefix and range scans
//! select exactly what they mean.
//!
//! | tree kind            | key (after the account's prefix)  | value            |
//! |----------------------|-----------------------------------|------------------|
//! | `meta`               | `device`, `device_id_seq`, `latest_sync_key_id` | device record, counter, bytes |
//! | `identities`         | address                           | 32-byte key      |
//! | `sessions`           | address                           | bytes            |
//! | `prekeys`            | id                                | record, uploaded |
//! | `signed_prekeys`     | id                                | bytes            |
//! | `sender_keys`        | address                           | bytes            |
//! | `sync_keys`          | key id                            | sync key         |
//! | `app_state_versions` | collection                        | hash state       |
//! | `mutation_macs`      | (collection, index MAC)           | value MAC        |
//! | `sender_key_devices` | (group, device)                   | has key          |
//! | `lid_mappings`       | LID                               | mapping          |
//! | `pn_to_lid`          | phone number                      | LID              |
//! | `base_keys`          | (address, message id)             | bytes            |
//! | `device_lists`       | user                              | device list      |
//! | `group_metadata`     | group                             | bytes            |
//! | `tc_tokens`          | JID                               | token            |
//!
//! Messages (outbox, inbox, chats) are not in sled: they live in SQLite,
//! `messages.db` beside the state database (see `messages/`), so a restore
//! of the session or `clear` leaves them alone. So do the records
//! whatsapp-rust keeps per message (its copy of each send, message
//! secrets, received messages it buffers until the inbox holds them): the
//! backend forwards them to the account's message store
//! (`messages/library.rs`); `clear` deletes those, a restore leaves them,
//! and backups do not carry them.

pub mod access;
mod backend;
pub mod backup;
pub mod codec;
mod db;
mod error;
mod keys;
mod memory;
pub mod messages;
mod records;
pub mod seal;

#[cfg(test)]
mod tests;

pub use backend::{AccountSnapshot, ResendSource, SledBackend, VerifyReport};
pub use backup::{BackupDb, BackupError, SnapshotInfo};
pub use db::StateDb;
pub use error::Fault;
pub use error::StoreError;
pub use memory::release_freed_now_and_then;
pub use messages::{
    Address, Annotations, Change, ChatSummary, Contact, Context, DeliveryStatus, Draft, Enqueued,
    Inbound, InboxRecord, MediaDraft, MediaKind, MediaLookup, MediaMeta, MediaRef, MessageDb,
    MessageStore, OutboxCounts, OutboxRecord, OutgoingMedia, Page, Pruned, Reaction, Retention,
    Sendable, Sighting, StoredMedia, ToFile, Uploaded, messages_db_path,
};
pub use records::WebVersion;
pub use seal::{SealError, Sealer};
