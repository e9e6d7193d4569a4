//! How an account's command errors reach a client: shared by the request
//! handler and the backup calls.

use crate::account::CommandError;
use crate::ipc::protocol::RpcError;

pub(super) fn command_error(account: &str, e: CommandError) -> RpcError {
    match e {
        CommandError::NotConnected { state, .. } => RpcError::not_connected(account, state),
        CommandError::InvalidState { state, what, .. } => {
            RpcError::invalid_state(account, state, what)
        }
        CommandError::Rejected(why) => RpcError::send_failed(why),
        CommandError::Store(why) => RpcError::storage(why),
        CommandError::Gone => RpcError::shutting_down(),
    }
}
