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
    #[serde(default)]
    to: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    media: Option<super::media_msg::MediaRequest>,
    #[serde(default)]
    addressing: Addressing,
}

#[derive(Deserialize)]
struct GroupRequest {
    subject: String,
    members: Vec<String>,
    with_account: String,
}

#[derive(Deserialize)]
struct ReceiptRequest {
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    group: Option<String>,
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
            ("POST", "/admin/groups") => Some(self.admin_groups(view, body).await),
            ("GET", "/admin/messaging/stats") => Some(AdminReply::ok(json!(self.stats()))),
            _ => None,
        }
    }

    async fn admin_groups(&self, view: &dyn ServerView, body: &[u8]) -> AdminReply {
        let request: GroupRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return AdminReply::bad_request(format!(
                    "body must be JSON {{subject, members: [phone...], with_account}}: {e}"
                ));
            }
        };
        match self
            .create_group(
                view,
                &request.subject,
                &request.members,
                &request.with_account,
            )
            .await
        {
            Ok(jid) => AdminReply::ok(json!({ "jid": jid })),
            Err(e) => AdminReply::bad_request(e.to_string()),
        }
    }

    async fn admin_inbox(&self, view: &dyn ServerView, query: &[(String, String)]) -> AdminReply {
        let param = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let entries = match (param("contact"), param("group")) {
            (Some(contact), _) => {
                // A contact named by its LID is the same person as by its number.
                let contact = match contact.parse::<wacore_binary::Jid>() {
                    Ok(jid) if jid.is_lid() => view.phone_of_lid(&jid.user).unwrap_or(contact),
                    _ => contact,
                };
                self.inbox(&contact).await
            }
            (None, Some(group)) => self.group_inbox(&group).await,
            (None, None) => {
                return AdminReply::bad_request(
                    "missing query parameter contact or group; use /admin/inbox?contact=15551234567 or /admin/inbox?group=JID",
                );
            }
        };
        let entries: Vec<Value> = entries
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
                    "body must be JSON {{from, to | group, text, id?, addressing?: \"lid\"|\"pn\", media?}}: {e}"
                ));
            }
        };
        if let Some(group) = &request.group {
            let result = self
                .post_to_group(
                    view,
                    &request.from,
                    group,
                    &request.text,
                    request.media.as_ref(),
                    request.id,
                )
                .await;
            return match result {
                Ok(id) => AdminReply::ok(json!({ "id": id })),
                Err(e) => AdminReply::bad_request(e.to_string()),
            };
        }
        let result = match &request.media {
            Some(media) => {
                let mut media = media.clone();
                // A top-level text is the media's caption when none is given.
                if media.caption.is_none() && !request.text.is_empty() {
                    media.caption = Some(request.text.clone());
                }
                self.deliver_media(
                    view,
                    &request.from,
                    &request.to,
                    &media,
                    request.id,
                    request.addressing,
                )
                .await
            }
            None => {
                self.deliver(
                    view,
                    &request.from,
                    &request.to,
                    &request.text,
                    request.id,
                    request.addressing,
                )
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
                    "body must be JSON {{from, to | group, id, kind}}: {e}"
                ));
            }
        };
        let Some(kind) = ReceiptKind::parse(&request.kind) else {
            return AdminReply::bad_request(format!(
                "kind {:?} is unknown; use \"delivery\" or \"read\"",
                request.kind
            ));
        };
        let result = match &request.group {
            Some(group) => {
                self.group_receipt(view, &request.from, group, &request.id, kind)
                    .await
            }
            None => {
                self.receipt(view, &request.from, &request.to, &request.id, kind, None)
                    .await
            }
        };
        match result {
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
