//! The store layer: the only place that touches sled.
//!
//! [`StateDb`] is the live-state database shared by all accounts; each
//! account gets a [`SledBackend`], the whatsapp-rust `Backend` on trees named
//! `acct:<account>:<kind>`. Values are encoded by [`codec`] (bincode 2 behind
//! a schema version byte).

mod backend;
pub mod codec;
mod db;
mod error;
mod keys;
mod records;

#[cfg(test)]
mod tests;

pub use backend::{AccountSnapshot, SledBackend, VerifyReport};
pub use db::StateDb;
pub use error::StoreError;
