//! Compact XML-like rendering of binary nodes for debug logs, and the
//! helpers every stanza builder uses to read attributes and to write
//! JID-valued ones as JIDs.

use std::fmt::Write as _;
use wacore_binary::jid::Server;
use wacore_binary::{Jid, Node, NodeContent, NodeValue};

/// Renders `node` as `<tag a="b">…</tag>`, byte payloads shown by length.
pub fn render(node: &Node) -> String {
    let mut out = String::new();
    write_node(&mut out, node);
    out
}

fn write_node(out: &mut String, node: &Node) {
    let _ = write!(out, "<{}", node.tag);
    for (k, v) in node.attrs.iter() {
        let _ = write!(out, " {k}=\"{v}\"");
    }
    match &node.content {
        None => out.push_str("/>"),
        Some(NodeContent::Nodes(children)) => {
            out.push('>');
            for c in children {
                write_node(out, c);
            }
            let _ = write!(out, "</{}>", node.tag);
        }
        Some(NodeContent::String(s)) => {
            let _ = write!(out, ">{s}</{}>", node.tag);
        }
        Some(NodeContent::Bytes(b)) => {
            let _ = write!(out, ">[{} bytes]</{}>", b.len(), node.tag);
        }
    }
}

/// The attribute `key` of `node` as a string.
pub fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.to_string())
}

/// The first child of `node` tagged `tag`.
pub fn child<'a>(node: &'a Node, tag: &str) -> Option<&'a Node> {
    node.children()?.iter().find(|c| c.tag == tag)
}

/// The byte (or string) content of `node`.
pub fn content_bytes(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        Some(NodeContent::String(s)) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The server's own JID, `s.whatsapp.net`: on the wire a JID with an empty
/// user (JID_PAIR), never the dictionary token for the string. Clients
/// compare `from` with this value and ignore stanzas that carry the string.
pub fn server_jid() -> Jid {
    Jid::new("", Server::Pn)
}

/// The attribute `key` of `node` as a JID, whether it came as one or as text.
pub fn jid_attr(node: &Node, key: &str) -> Option<Jid> {
    match node.attrs.get(key)? {
        NodeValue::Jid(j) => Some(j.clone()),
        other => other.as_str().parse().ok(),
    }
}

/// `address` (a JID in text, `s.whatsapp.net` included) as a JID attribute
/// value; text that is no JID stays text.
pub fn jid_value(address: &str) -> NodeValue {
    match address.parse::<Jid>() {
        Ok(jid) => NodeValue::Jid(jid),
        Err(_) => NodeValue::from(address),
    }
}

/// Where a reply to `node` comes from: the address the client sent it to
/// (`to`), the server when it named none.
pub fn reply_from(node: &Node) -> Jid {
    jid_attr(node, "to").unwrap_or_else(server_jid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_binary::builder::NodeBuilder;

    #[test]
    fn the_server_jid_goes_out_as_a_jid_pair_with_no_user() {
        let node = NodeBuilder::new("iq").attr("from", server_jid()).build();
        let bytes = wacore_binary::marshal::marshal(&node).expect("marshal");
        let plain = wacore_binary::util::unpack(&bytes).expect("unpack");
        let back = wacore_binary::marshal::unmarshal_ref(&plain)
            .expect("unmarshal")
            .to_owned();
        match back.attrs.get("from") {
            Some(NodeValue::Jid(j)) => {
                assert!(j.user.is_empty());
                assert_eq!(j.server, Server::Pn);
            }
            other => panic!("from decoded as {other:?}, not a JID"),
        }
        assert_eq!(jid_value("s.whatsapp.net"), NodeValue::Jid(server_jid()));
        assert_eq!(
            jid_value("15550000001:2@s.whatsapp.net").to_string(),
            "15550000001:2@s.whatsapp.net"
        );
    }
}
