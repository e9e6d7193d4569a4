//! The messaging routes of the admin HTTP API, independent of the HTTP
//! server: the core's router hands over method, path, query and body.

use serde::Deserialize;
use serde_json::{Value, json};

use super::directory::ServerView;
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
    #[serde(default)]
    text: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    media: Option<super::media_msg::MediaRequest>,
}

#[derive(Deserialize)]
struct ReceiptRequest {
    from: String,
    to: String,
    id: String,
    kind: String,
}

impl Messaging {
    /// Serves `GET /admin/inbox?contact=N`, `POST /admin/deliver`,
    /// `POST /admin/receipt` and `GET /admin/messaging/stats`; `None` for
    /// any other route.
    /// `query` holds the decoded query-string pairs.
    pub async fn admin(
        &self,
        view: &dyn ServerView,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Option<AdminReply> {
        match (method, path) {
            ("GET", "/admin/inbox") => Some(self.admin_inbox(query).await),
            ("POST", "/admin/deliver") => Some(self.admin_deliver(view, body).await),
            ("POST", "/admin/receipt") => Some(self.admin_receipt(view, body).await),
            ("GET", "/admin/messaging/stats") => Some(AdminReply::ok(json!(self.stats()))),
            _ => None,
        }
    }

    async fn admin_inbox(&self, query: &[(String, String)]) -> AdminReply {
        let contact = query
            .iter()
            .find(|(k, _)| k == "contact")
            .map(|(_, v)| v.clone());
        let Some(contact) = contact else {
            return AdminReply::bad_request(
                "missing query parameter contact; use /admin/inbox?contact=15551234567",
            );
        };
        let entries: Vec<Value> = self
            .inbox(&contact)
            .await
            .into_iter()
            .map(|e| {
                let mut entry =
                    json!({ "id": e.id, "from": e.from, "text": e.text, "time": e.time });
                if let Some(media) = e.media {
                    entry["media"] = json!(media);
                }
                entry
            })
            .collect();
        AdminReply::ok(Value::Array(entries))
    }

    async fn admin_deliver(&self, view: &dyn ServerView, body: &[u8]) -> AdminReply {
        let request: DeliverRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return AdminReply::bad_request(format!(
                    "body must be JSON {{from, to, text, id?, media?}}: {e}"
                ));
            }
        };
        let result = match &request.media {
            Some(media) => {
                let mut media = media.clone();
                // A top-level text is the media's caption when none is given.
                if media.caption.is_none() && !request.text.is_empty() {
                    media.caption = Some(request.text.clone());
                }
                self.deliver_media(view, &request.from, &request.to, &media, request.id)
                    .await
            }
            None => {
                self.deliver(view, &request.from, &request.to, &request.text, request.id)
                    .await
            }
        };
        match result {
            Ok(id) => AdminReply::ok(json!({ "id": id })),
            Err(e) => AdminReply::bad_request(e.to_string()),
        }
    }

    async fn admin_receipt(&self, view: &dyn ServerView, body: &[u8]) -> AdminReply {
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
            .receipt(view, &request.from, &request.to, &request.id, kind)
            .await
        {
            Ok(()) => AdminReply::ok(json!({})),
            Err(e) => AdminReply::bad_request(e.to_string()),
        }
    }
}
