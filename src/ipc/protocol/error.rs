//! The JSON-RPC error object and the errors walinkd answers with, each
//! saying what failed and what to do; and reading params, whose mistakes
//! are one of those errors.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{AccountState, MAX_LINE_BYTES, code, method};

/// A JSON-RPC error object. `message` says what failed and what to do;
/// `data`, when present, is an object with machine-readable details
/// (`account`, `state`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }

    pub fn parse_error(detail: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::PARSE_ERROR,
            format!("request is not valid JSON: {detail}; send one JSON object per line"),
        )
    }

    pub fn invalid_request(detail: impl fmt::Display) -> RpcError {
        RpcError::new(code::INVALID_REQUEST, format!("invalid request: {detail}"))
    }

    pub fn line_too_long() -> RpcError {
        RpcError::invalid_request(format!(
            "line longer than {MAX_LINE_BYTES} bytes was discarded; send one JSON object per line, at most {MAX_LINE_BYTES} bytes"
        ))
    }

    pub fn method_not_found(method: &str) -> RpcError {
        RpcError::new(
            code::METHOD_NOT_FOUND,
            format!(
                "unknown method {method:?}; methods are: {}",
                method::ALL.join(", ")
            ),
        )
        .with_data(json!({ "method": method }))
    }

    pub fn invalid_params(detail: impl fmt::Display) -> RpcError {
        RpcError::new(code::INVALID_PARAMS, format!("invalid params: {detail}"))
    }

    pub fn internal(detail: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::INTERNAL_ERROR,
            format!("internal error: {detail}; see walinkd's log"),
        )
    }

    /// `configured` lists the names the daemon knows, to help with typos.
    pub fn unknown_account(name: &str, configured: &[&str]) -> RpcError {
        let known = if configured.is_empty() {
            "no account is configured; add an [[account]] to walink.toml and reload".to_owned()
        } else {
            format!("configured accounts: {}", configured.join(", "))
        };
        RpcError::new(
            code::UNKNOWN_ACCOUNT,
            format!("unknown account {name:?}; {known}"),
        )
        .with_data(json!({ "account": name }))
    }

    pub fn not_connected(account: &str, state: AccountState) -> RpcError {
        RpcError::new(
            code::NOT_CONNECTED,
            format!(
                "account {account:?} is not connected (state: {state}); see `walink status {account}`"
            ),
        )
        .with_data(json!({ "account": account, "state": state }))
    }

    pub fn invalid_recipient(to: &str, why: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::INVALID_RECIPIENT,
            format!("invalid recipient {to:?}: {why}"),
        )
        .with_data(json!({ "to": to }))
    }

    pub fn invalid_message(why: impl fmt::Display) -> RpcError {
        RpcError::new(code::INVALID_MESSAGE, format!("invalid message: {why}"))
    }

    pub fn already_paired(account: &str, jid: &str) -> RpcError {
        RpcError::new(
            code::ALREADY_PAIRED,
            format!(
                "account {account:?} is already linked as {jid}; run `walink clear-session {account}` first to link another phone"
            ),
        )
        .with_data(json!({ "account": account, "jid": jid }))
    }

    /// `what` is the refused operation and the way out, e.g.
    /// "cannot send while logged out; run `walink initialize sales` and pair again".
    pub fn invalid_state(account: &str, state: AccountState, what: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::INVALID_STATE,
            format!("account {account:?} is {state}: {what}"),
        )
        .with_data(json!({ "account": account, "state": state }))
    }

    pub fn timeout(what: impl fmt::Display) -> RpcError {
        RpcError::new(code::TIMEOUT, format!("timed out: {what}"))
    }

    pub fn storage(detail: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::STORAGE,
            format!("storage error: {detail}; check the disk and walinkd's log"),
        )
    }

    pub fn shutting_down() -> RpcError {
        RpcError::new(
            code::SHUTTING_DOWN,
            "walinkd is shutting down; retry once it is back",
        )
    }

    pub fn send_failed(detail: impl fmt::Display) -> RpcError {
        RpcError::new(code::SEND_FAILED, format!("send failed: {detail}"))
    }

    /// A received file could not be fetched, checked or written.
    pub fn media_failed(id: &str, detail: impl fmt::Display) -> RpcError {
        RpcError::new(
            code::MEDIA_FAILED,
            format!("fetching the file of message {id} failed: {detail}"),
        )
        .with_data(json!({ "id": id }))
    }
}

/// Deserializes method params, treating absent/`null` params as `{}` and
/// reporting unknown or mistyped fields as `invalid params`.
pub fn parse_params<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    let params = match params {
        Value::Null => Value::Object(Default::default()),
        Value::Object(map) => Value::Object(map),
        other => {
            return Err(RpcError::invalid_params(format!(
                "params must be an object, got {}",
                json_kind(&other)
            )));
        }
    };
    serde_json::from_value(params).map_err(RpcError::invalid_params)
}

/// A method's result, already serialized: a reply is written as it was
/// built, with no `Value` tree in between (for `status` of 5,000 accounts
/// that tree cost more than the rest of the answer).
pub type Reply = Box<serde_json::value::RawValue>;

/// Serializes a method's result for [`crate::ipc::server::Handler::handle`].
pub fn to_result<T: Serialize + ?Sized>(result: &T) -> Result<Reply, RpcError> {
    serde_json::value::to_raw_value(result).map_err(RpcError::internal)
}

/// "string", "array", … for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
