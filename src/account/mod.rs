//! One account's life: the supervisor state machine, its reconnect policy and
//! its health model. Knows nothing of sockets or JSON.

pub mod backoff;
pub mod health;
mod outbox;
pub mod snapshots;
pub mod state;
pub mod supervisor;
pub mod waiters;

pub use crate::store::DeliveryStatus;
pub use supervisor::{
    AccountEvent, AccountHandle, AccountSpec, CommandError, OfflineWork, Qr, Settings, Snapshot,
};
pub use waiters::{StatusWaiter, StatusWaiters};
