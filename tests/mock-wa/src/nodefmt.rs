//! Compact XML-like rendering of binary nodes for debug logs.

use std::fmt::Write as _;
use wacore_binary::{Node, NodeContent};

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
