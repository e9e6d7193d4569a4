//! One account's life: the supervisor state machine, its reconnect policy and
//! its health model. Knows nothing of sockets or JSON.

pub mod backoff;
pub mod custody;
mod downloads;
pub mod events;
pub mod gate;
pub mod health;
mod outbox;
pub mod snapshots;
pub mod state;
pub mod supervisor;
pub mod waiters;

pub use crate::store::DeliveryStatus;
pub use events::{AccountEvent, Qr};
pub use gate::HandshakeGate;
pub(crate) use outbox::now_ms;
pub use supervisor::{
    AccountHandle, AccountSpec, CommandError, Context, OfflineWork, Settings, Snapshot,
};
pub use waiters::{StatusWaiter, StatusWaiters};
