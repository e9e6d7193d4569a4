//! The messaging routes of the admin HTTP API, independent of the HTTP
//! server: the core's router hands over method, path, query and body.

use serde::Deserialize;
use serde_json::{Value, json};

use super::hub::{Messaging, ReceiptKind};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminReply {
    pub status: u16,
    pub body: Value,
}

impl AdminReply {
    fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            body: json!({ "error": message.into() }),
        }
    }
}

#[derive(Deserialize)]
struct DeliverRequest {
    from: String,
    to: String,
    text: String,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct ReceiptRequest {
    from: String,
    to: String,
    id: String,
    kind: String,
}

impl Messaging {
    /// Serves `GET /admin/inbox?contact=N`, `POST /admin/deliver` and
    /// `POST /admin/receipt`; `None` for any other route.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Option<AdminReply> {
        match (method, path) {
            ("GET", "/admin/inbox") => Some(self.admin_inbox(query).await),
            ("POST", "/admin/deliver") => Some(self.admin_deliver(body).await),
            ("POST", "/admin/receipt") => Some(self.admin_receipt(body).await),
            _ => None,
        }
    }

    async fn admin_inbox(&self, query: &str) -> AdminReply {
        let Some(contact) = query_param(query, "contact") else {
            return AdminReply::bad_request(
                "missing query parameter contact; use /admin/inbox?contact=15551234567",
            );
        };
        let entries: Vec<Value> = self
            .inbox(&contact)
            .await
            .into_iter()
            .map(|e| json!({ "id": e.id, "from": e.from, "text": e.text, "time": e.time }))
            .collect();
        AdminReply::ok(Value::Array(entries))
    }

    async fn admin_deliver(&self, body: &[u8]) -> AdminReply {
        let request: DeliverRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return AdminReply::bad_request(format!(
                    "body must be JSON {{from, to, text, id?}}: {e}"
                ));
            }
        };
        match self
            .deliver(&request.from, &request.to, &request.text, request.id)
            .await
        {
            Ok(id) => AdminReply::ok(json!({ "id": id })),
            Err(e) => AdminReply::bad_request(e.to_string()),
        }
    }

    async fn admin_receipt(&self, body: &[u8]) -> AdminReply {
        let request: ReceiptRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return AdminReply::bad_request(format!(
                    "body must be JSON {{from, to, id, kind}}: {e}"
                ));
            }
        };
        let Some(kind) = ReceiptKind::parse(&request.kind) else {
            return AdminReply::bad_request(format!(
                "kind {:?} is unknown; use \"delivery\" or \"read\"",
                request.kind
            ));
        };
        match self
            .receipt(&request.from, &request.to, &request.id, kind)
            .await
        {
            Ok(()) => AdminReply::ok(json!({})),
            Err(e) => AdminReply::bad_request(e.to_string()),
        }
    }
}

/// One parameter of a URL query string, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_and_decoded() {
        assert_eq!(
            query_param("a=1&contact=%2B15551234567", "contact").as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            query_param("contact=1555", "contact").as_deref(),
            Some("1555")
        );
        assert_eq!(query_param("a=1", "contact"), None);
        assert_eq!(percent_decode("100%"), "100%");
    }
}
