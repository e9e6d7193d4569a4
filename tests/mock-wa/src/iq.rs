//! Answers to the IQs the core owns: keepalive, passive/active, props,
//! blocklist, privacy, app-state sync, mex and the rest of what
//! whatsapp-rust sends after login. Anything unknown gets a well-formed
//! `501 feature-not-implemented` error, never silence.

use crate::handlers::{iq_error, iq_result};
use crate::nodefmt::{attr, child};
use crate::state::{Device, ServerState};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

/// What the core made of an IQ.
pub enum IqAnswer {
    /// Send this reply.
    Reply(Node),
    /// A keepalive ping; send this reply and count it.
    Ping(Node),
    /// Owned by the stanza handlers (`encrypt`, `usync`).
    Handlers,
    /// A stage of pairing by phone-number code, which needs the connection.
    PairCode,
    /// A reply from the client to an IQ the server sent; nothing to answer.
    ClientReply,
    /// Not known to the mock: send this error.
    Unknown(Node),
}

/// Decides how to answer `node` (an `<iq>`) from `device` (`None` before login).
pub fn answer(state: &ServerState, device: Option<&Device>, node: &Node) -> IqAnswer {
    let ty = attr(node, "type").unwrap_or_default();
    if ty == "result" || ty == "error" {
        return IqAnswer::ClientReply;
    }
    let xmlns = attr(node, "xmlns").unwrap_or_default();
    let first = node
        .children()
        .and_then(|c| c.first())
        .map(|c| c.tag.as_ref());
    match (xmlns.as_str(), ty.as_str()) {
        ("w:p", "get") | ("urn:xmpp:ping", "get") => IqAnswer::Ping(iq_result(node, Vec::new())),
        ("encrypt", _) | ("usync", _) | ("w:g2", _) => IqAnswer::Handlers,
        ("passive", "set") => IqAnswer::Reply(iq_result(node, Vec::new())),
        ("w", "set") if first == Some("unified_session") => {
            IqAnswer::Reply(iq_result(node, Vec::new()))
        }
        ("w", "get") if first == Some("props") => IqAnswer::Reply(props(node)),
        ("abt", "get") => IqAnswer::Reply(abprops(node)),
        ("blocklist", "get") => {
            IqAnswer::Reply(iq_result(node, vec![NodeBuilder::new("list").build()]))
        }
        ("blocklist", "set") => IqAnswer::Reply(iq_result(node, Vec::new())),
        ("privacy", "get") => IqAnswer::Reply(privacy(node)),
        ("privacy", "set") => IqAnswer::Reply(iq_result(node, Vec::new())),
        ("w:sync:app:state", "set") => IqAnswer::Reply(app_state(node)),
        ("md", "set") if first == Some("link_code_companion_reg") => IqAnswer::PairCode,
        ("md", "set") if first == Some("remove-companion-device") => {
            IqAnswer::Reply(remove_companion(state, device, node))
        }
        ("w:m", "set") if first == Some("media_conn") => {
            IqAnswer::Reply(iq_result(node, vec![state.media.media_conn()]))
        }
        ("w:m", _)
        | ("w:mex", _)
        | ("status", _)
        | ("disappearing_mode", _)
        | ("w:profile:picture", _) => IqAnswer::Unknown(iq_error(node, 404, "item-not-found")),
        _ => IqAnswer::Unknown(iq_error(node, 501, "feature-not-implemented")),
    }
}

fn props(node: &Node) -> Node {
    let hash = child(node, "props")
        .and_then(|p| attr(p, "hash"))
        .unwrap_or_else(|| "mock".to_owned());
    iq_result(
        node,
        vec![
            NodeBuilder::new("props")
                .attr("protocol", "1")
                .attr("hash", hash)
                .build(),
        ],
    )
}

fn abprops(node: &Node) -> Node {
    iq_result(
        node,
        vec![
            NodeBuilder::new("props")
                .attr("protocol", "1")
                .attr("ab_key", "mock")
                .attr("hash", "mock")
                .attr("refresh", "86400")
                .build(),
        ],
    )
}

fn privacy(node: &Node) -> Node {
    let categories = [
        ("last", "all"),
        ("online", "all"),
        ("profile", "all"),
        ("status", "all"),
        ("groupadd", "all"),
        ("readreceipts", "all"),
        ("calladd", "all"),
    ]
    .into_iter()
    .map(|(name, value)| {
        NodeBuilder::new("category")
            .attr("name", name)
            .attr("value", value)
            .build()
    });
    iq_result(
        node,
        vec![NodeBuilder::new("privacy").children(categories).build()],
    )
}

/// Every requested collection exists, is empty and at version 0.
fn app_state(node: &Node) -> Node {
    let collections: Vec<Node> = child(node, "sync")
        .and_then(|s| s.children())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.tag == "collection")
        .map(|c| {
            NodeBuilder::new("collection")
                .attr("name", attr(c, "name").unwrap_or_default())
                .attr("version", "0")
                .build()
        })
        .collect();
    iq_result(
        node,
        vec![NodeBuilder::new("sync").children(collections).build()],
    )
}

/// Logout: the device asks to be removed. Only devices of the same account
/// may be removed.
fn remove_companion(state: &ServerState, device: Option<&Device>, node: &Node) -> Node {
    let Some(device) = device else {
        return iq_error(node, 401, "not-authorized");
    };
    let target = child(node, "remove-companion-device")
        .and_then(|c| attr(c, "jid"))
        .unwrap_or_else(|| device.jid.clone());
    let same_account = target
        .split(['@', ':'])
        .next()
        .is_some_and(|user| user == device.phone);
    if !same_account {
        return iq_error(node, 403, "forbidden");
    }
    state.remove_device(&target);
    iq_result(node, Vec::new())
}
