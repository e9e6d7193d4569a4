//! walink: keeps WhatsApp accounts linked and online on Linux servers.
//!
//! Layers, top to bottom (a layer only uses the ones below it):
//! `daemon` (process life) → `account` (one account's state machine) →
//! `wa` (the only user of whatsapp-rust) → `store` (the only user of sled).
//! `net` dials (family, proxy, TLS) for `wa`. `ipc` holds the protocol shared by daemon and CLI; `cli` is the client side.

pub mod account;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod ipc;
pub mod messages;
pub mod net;
pub mod store;
pub mod wa;
