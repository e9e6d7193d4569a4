//! The boundary between the connection core and the Signal side.
//!
//! The core owns transport, handshake, pairing, login and the IQs every
//! client sends; it routes each `<message>`, `<receipt>` and `<ack>` stanza,
//! and every IQ with `xmlns="encrypt"` or `xmlns="usync"`, to a
//! [`StanzaHandlers`] implementation, one method per kind. Each method gets
//! a [`Ctx`] (server state plus the sending device) and the node, and returns
//! the nodes to send back to that device. To reach another device, use
//! [`crate::ServerState::push`]. [`BasicHandlers`] gives valid minimal
//! answers; the Signal engineer's implementation replaces it through
//! [`crate::MockServer::start_with`].

use crate::nodefmt::{attr, child, jid_attr, reply_from, server_jid};
use crate::state::{Device, ServerState};
use async_trait::async_trait;
use std::sync::Arc;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

/// Who sent a stanza and where.
pub struct Ctx {
    pub state: Arc<ServerState>,
    /// The logged-in device the stanza came from.
    pub device: Device,
}

/// A parsed admin HTTP request handed to [`StanzaHandlers::admin`].
pub struct AdminRequest {
    pub method: String,
    /// Path without the query string, e.g. `/admin/inbox`.
    pub path: String,
    /// Decoded `key=value` pairs of the query string.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl AdminRequest {
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An admin HTTP response: status code and a JSON body.
pub struct AdminResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

/// One method per stanza kind the Signal side owns. All default to
/// [`BasicHandlers`]' behaviour, so an implementation overrides only what it
/// handles.
#[async_trait]
pub trait StanzaHandlers: Send + Sync + 'static {
    /// A `<message>` from a device. Default: counted and acked, not decrypted.
    async fn message(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        let _ = ctx;
        vec![ack_for(node, "message")]
    }

    /// A `<receipt>` from a device. Default: acked.
    async fn receipt(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        let _ = ctx;
        vec![ack_for(node, "receipt")]
    }

    /// An `<ack>` from a device for something the server delivered.
    async fn ack(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        let _ = (ctx, node);
        Vec::new()
    }

    /// An `<iq xmlns="encrypt">`: prekey count, upload, bundle fetch, digest.
    async fn encrypt_iq(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        vec![basic_encrypt_iq(ctx, node)]
    }

    /// An `<iq xmlns="usync">`: device lists and contact queries.
    async fn usync_iq(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        let _ = ctx;
        vec![basic_usync_iq(node)]
    }

    /// An `<iq xmlns="w:g2">`: group metadata. Default: not implemented.
    async fn group_iq(&self, ctx: &Ctx, node: &Node) -> Vec<Node> {
        let _ = ctx;
        vec![iq_error(node, 501, "feature-not-implemented")]
    }

    /// Right after `<success>`: stanzas queued while the device was offline.
    /// The core sends them, then `<ib><offline count=N/></ib>`.
    async fn on_login(&self, ctx: &Ctx) -> Vec<Node> {
        let _ = ctx;
        Vec::new()
    }

    /// An admin request the core did not route (e.g. `/admin/inbox`).
    /// `None` means 404.
    async fn admin(&self, state: &Arc<ServerState>, req: &AdminRequest) -> Option<AdminResponse> {
        let _ = (state, req);
        None
    }
}

/// The minimal handlers used until a Signal implementation is plugged in.
pub struct BasicHandlers;

impl StanzaHandlers for BasicHandlers {}

/// `<ack>` the server sends for a stanza of `class` it accepted.
pub fn ack_for(node: &Node, class: &str) -> Node {
    let mut b = NodeBuilder::new("ack")
        .attr("class", class.to_owned())
        .attr("from", server_jid());
    if let Some(id) = attr(node, "id") {
        b = b.attr("id", id);
    }
    if let Some(to) = jid_attr(node, "to") {
        b = b.attr("to", to);
    }
    if let Some(t) = attr(node, "type") {
        b = b.attr("type", t);
    }
    b.build()
}

/// A `type="result"` reply to IQ `node`, with `children`.
pub fn iq_result(node: &Node, children: Vec<Node>) -> Node {
    let mut b = NodeBuilder::new("iq")
        .attr("type", "result")
        .attr("from", reply_from(node));
    if let Some(id) = attr(node, "id") {
        b = b.attr("id", id);
    }
    if !children.is_empty() {
        b = b.children(children);
    }
    b.build()
}

/// A `type="error"` reply to IQ `node`.
pub fn iq_error(node: &Node, code: u16, text: &str) -> Node {
    let mut b = NodeBuilder::new("iq")
        .attr("type", "error")
        .attr("from", reply_from(node));
    if let Some(id) = attr(node, "id") {
        b = b.attr("id", id);
    }
    b.children([NodeBuilder::new("error")
        .attr("code", code.to_string())
        .attr("text", text.to_owned())
        .build()])
        .build()
}

/// Prekey count, upload, rotation and digest get well-formed answers; bundle
/// fetches get a per-user 404 because no Signal keys exist yet.
fn basic_encrypt_iq(ctx: &Ctx, node: &Node) -> Node {
    let _ = ctx;
    if child(node, "count").is_some() {
        // Enough that the client does not upload on every login.
        return iq_result(
            node,
            vec![NodeBuilder::new("count").attr("value", "50").build()],
        );
    }
    if let Some(key) = child(node, "key") {
        let users = key
            .children()
            .unwrap_or_default()
            .iter()
            .filter(|u| u.tag == "user")
            .map(|u| {
                let mut b = NodeBuilder::new("user");
                if let Some(jid) = jid_attr(u, "jid") {
                    b = b.attr("jid", jid);
                }
                b.children([NodeBuilder::new("error")
                    .attr("code", "404")
                    .attr("text", "item-not-found")
                    .build()])
                    .build()
            })
            .collect::<Vec<_>>();
        return iq_result(node, vec![NodeBuilder::new("list").children(users).build()]);
    }
    // Upload (`<registration>`…), signed prekey rotation (`<rotate>`) and
    // digest are accepted; an empty digest answer makes the client skip its
    // check instead of re-uploading.
    iq_result(node, Vec::new())
}

/// Echoes each queried user with an empty `<devices><device-list/>`.
fn basic_usync_iq(node: &Node) -> Node {
    let Some(usync) = child(node, "usync") else {
        return iq_error(node, 400, "bad-request");
    };
    let users: Vec<Node> = child(usync, "list")
        .and_then(|l| l.children())
        .unwrap_or_default()
        .iter()
        .filter(|u| u.tag == "user")
        .map(|u| {
            let mut b = NodeBuilder::new("user");
            if let Some(jid) = jid_attr(u, "jid") {
                b = b.attr("jid", jid);
            }
            b.children([NodeBuilder::new("devices")
                .children([NodeBuilder::new("device-list").build()])
                .build()])
                .build()
        })
        .collect();
    let mut out = NodeBuilder::new("usync");
    for key in ["sid", "mode", "context", "index", "last"] {
        if let Some(v) = attr(usync, key) {
            out = out.attr(key, v);
        }
    }
    iq_result(
        node,
        vec![
            out.children([NodeBuilder::new("list").children(users).build()])
                .build(),
        ],
    )
}
