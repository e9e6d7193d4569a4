//! What an account's handle asks its supervisor task, and why an ask fails.
//! Below both, so the handle and the task depend on it and not on each other.

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::oneshot;

use super::state::AccountState;
use crate::store::SledBackend;
use crate::wa::Session;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("account {account} is {state}: {what}")]
    InvalidState {
        account: String,
        state: AccountState,
        what: String,
    },
    #[error(
        "account {account} is not connected ({state}); wait for it to reconnect or run `walink reconnect {account}`"
    )]
    NotConnected {
        account: String,
        state: AccountState,
    },
    #[error("{0}")]
    Rejected(String),
    #[error("the account's store failed: {0}")]
    Store(String),
    #[error("the account supervisor has stopped (daemon shutting down)")]
    Gone,
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// Work on an account's store with no client attached (a restore, an
/// import): the client caches the device in memory and writes it back, so
/// it must be gone first. Returns what to log.
pub type OfflineWork = Box<dyn FnOnce(&SledBackend) -> Result<String, String> + Send>;

pub(super) enum Command {
    Initialize(Reply<AccountState>),
    Reconnect(Reply<AccountState>),
    Restart(Reply<AccountState>),
    ClearSession(Reply<AccountState>),
    PairCode {
        phone: String,
        reply: Reply<String>,
    },
    Offline {
        work: OfflineWork,
        reply: Reply<AccountState>,
    },
    /// The connection, for a question to the server (usync, groups).
    Connection(oneshot::Sender<Option<Arc<Session>>>),
    Ping(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}
