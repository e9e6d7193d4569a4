//! The messaging routes of the admin HTTP API, independent of the HTTP
//! server: the core's router hands over method, path, query and body.

use serde::Deserialize;
use serde_json::{Value, json};

use super::addressing::Addressing;
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
    text: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    addressing: Addressing,
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
            ("GET", "/admin/inbox") => Some(self.admin_inbox(view, query).await),
            ("GET", "/admin/contacts") => Some(admin_contact(view, query)),
            ("POST", "/admin/deliver") => Some(self.admin_deliver(view, body).await),
            ("POST", "/admin/receipt") => Some(self.admin_receipt(view, body).await),
            ("GET", "/admin/messaging/stats") => Some(AdminReply::ok(json!(self.stats()))),
            _ => None,
        }
    }

    async fn admin_inbox(&self, view: &dyn ServerView, query: &[(String, String)]) -> AdminReply {
        let contact = query
            .iter()
            .find(|(k, _)| k == "contact")
            .map(|(_, v)| v.clone());
        let Some(contact) = contact else {
            return AdminReply::bad_request(
                "missing query parameter contact; use /admin/inbox?contact=15551234567",
            );
        };
        // A contact named by its LID is the same person as by its number.
        let contact = match contact.parse::<wacore_binary::Jid>() {
            Ok(jid) if jid.is_lid() => view.phone_of_lid(&jid.user).unwrap_or(contact),
            _ => contact,
        };
        let entries: Vec<Value> = self
            .inbox(&contact)
            .await
            .into_iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "from": e.from,
                    "to": e.to,
                    "text": e.text,
                    "time": e.time,
                    "addressing": e.addressing,
                    "media": e.media,
                })
            })
            .collect();
        AdminReply::ok(Value::Array(entries))
    }

    async fn admin_deliver(&self, view: &dyn ServerView, body: &[u8]) -> AdminReply {
        let request: DeliverRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return AdminReply::bad_request(format!(
                    "body must be JSON {{from, to, text, id?, addressing?: \"lid\"|\"pn\"}}: {e}"
                ));
            }
        };
        match self
            .deliver(
                view,
                &request.from,
                &request.to,
                &request.text,
                request.id,
                request.addressing,
            )
            .await
        {
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

/// `GET /admin/contacts?phone=N`: the number and the LID it goes by.
fn admin_contact(view: &dyn ServerView, query: &[(String, String)]) -> AdminReply {
    let phone = query.iter().find(|(k, _)| k == "phone").map(|(_, v)| v);
    let Some(phone) = phone.and_then(|p| super::stanza::user_of(p)) else {
        return AdminReply::bad_request(
            "missing or malformed query parameter phone; use /admin/contacts?phone=15551234567",
        );
    };
    let lid = view.lid_of(&phone);
    AdminReply::ok(json!({
        "phone": phone,
        "lid": wacore_binary::Jid::lid(lid).to_string(),
    }))
}
