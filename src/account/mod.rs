//! One account's life: the supervisor state machine, its reconnect policy and
//! its health model. Knows nothing of sockets or JSON.

pub mod backoff;
mod command;
pub mod custody;
mod downloads;
pub mod events;
pub mod gate;
mod handle;
pub mod health;
mod outbox;
mod retention;
pub mod snapshots;
mod spec;
pub mod state;
mod status;
mod supervisor;
pub mod waiters;

pub use crate::store::DeliveryStatus;
pub use command::{CommandError, OfflineWork};
pub use events::{AccountEvent, Qr};
pub use gate::HandshakeGate;
pub use handle::{AccountHandle, Context};
pub(crate) use outbox::now_ms;
pub use spec::{AccountSpec, Settings};
pub use status::Snapshot;
pub use waiters::{StatusWaiter, StatusWaiters};
