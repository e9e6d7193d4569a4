//! The JSON-RPC 2.0 envelopes every line on the socket is one of: a
//! request, its response, or a notification the server pushes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JSONRPC_VERSION, RpcError};

/// A request as a client writes it. `id: None` makes it a JSON-RPC
/// notification, which gets no reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

impl Request {
    pub fn new(id: u64, method: &str, params: Value) -> Request {
        Request {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id: Some(Value::from(id)),
            method: method.to_owned(),
            params,
        }
    }
}

/// A reply: `{"jsonrpc":"2.0","id":…,"result":…}` or `{…,"error":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    /// The request's id; `null` when the request could not be read far enough to know it.
    pub id: Value,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A successful [`Response`] as the server writes it, its result already
/// serialized (see [`super::Reply`]).
#[derive(Debug, Serialize)]
pub struct ResultLine<'a> {
    pub jsonrpc: &'a str,
    pub id: &'a Value,
    pub result: &'a serde_json::value::RawValue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Result(Value),
    Error(RpcError),
}

impl Response {
    pub fn error(id: Value, error: RpcError) -> Response {
        Response {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id,
            outcome: Outcome::Error(error),
        }
    }
}

/// A server-pushed message: `{"jsonrpc":"2.0","method":…,"params":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub jsonrpc: String,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

impl Notification {
    pub fn new(method: &str, params: Value) -> Notification {
        Notification {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            method: method.to_owned(),
            params,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::RpcError;
    use super::*;

    #[test]
    fn response_shapes() {
        let result = super::super::to_result(&json!({"id": "3EB0"})).unwrap();
        let ok = ResultLine {
            jsonrpc: JSONRPC_VERSION,
            id: &json!(1),
            result: &result,
        };
        let line = serde_json::to_string(&ok).unwrap();
        assert_eq!(line, r#"{"jsonrpc":"2.0","id":1,"result":{"id":"3EB0"}}"#);
        let read: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(read.outcome, Outcome::Result(json!({"id": "3EB0"})));
        let err = Response::error(json!("a"), RpcError::method_not_found("nope"));
        let value = serde_json::to_value(&err).unwrap();
        assert_eq!(value["error"]["code"], json!(-32601));
        assert_eq!(value["error"]["data"], json!({"method": "nope"}));
        assert!(value.get("result").is_none());
        let back: Response = serde_json::from_value(value).unwrap();
        assert_eq!(back, err);
        let null_result: Response =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":2,"result":null}"#).unwrap();
        assert_eq!(null_result.outcome, Outcome::Result(Value::Null));
    }

    #[test]
    fn request_without_id_serializes_as_notification() {
        let mut req = Request::new(5, "status", Value::Null);
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"jsonrpc":"2.0","id":5,"method":"status"}"#
        );
        req.id = None;
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"jsonrpc":"2.0","method":"status"}"#
        );
    }
}
