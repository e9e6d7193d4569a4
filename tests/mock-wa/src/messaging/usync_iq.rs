//! `iq xmlns="usync"`: who is on WhatsApp and which devices they have.
//!
//! Every phone number is "on WhatsApp" with one device (0) and a LID. An
//! account the core paired also lists its companion devices, with the ADV
//! key index list clients use to filter them. The `lid` protocol answers
//! `<lid val="LID@lid"/>`, which is how clients learn whom to address by
//! LID (current clients refuse to send to a number whose LID they lack).

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use waproto::whatsapp::{ADVKeyIndexList, ADVSignedKeyIndexList};

use super::directory::{AccountDevices, ServerView};
use super::hub::Messaging;
use super::stanza::{attr, iq_error, iq_result, jid_attr, now_secs};

impl Messaging {
    pub(super) fn handle_usync_iq(&self, view: &dyn ServerView, device: &Jid, iq: &Node) -> Node {
        let Some(usync) = iq.get_optional_child("usync") else {
            tracing::warn!(device = %device, "usync IQ without <usync>");
            return iq_error(iq, 400, "bad-request");
        };
        let protocols: Vec<String> = usync
            .get_optional_child("query")
            .and_then(|q| q.children())
            .map(|c| c.iter().map(|p| p.tag.to_string()).collect())
            .unwrap_or_default();
        let users: Vec<Node> = usync
            .get_optional_child("list")
            .map(|list| {
                list.get_children_by_tag("user")
                    .filter_map(|user| usync_user(view, user, &protocols))
                    .collect()
            })
            .unwrap_or_default();

        let mut answer = NodeBuilder::new("usync")
            .attr("index", "0")
            .attr("last", "true");
        for key in ["sid", "mode", "context"] {
            if let Some(value) = attr(usync, key) {
                answer = answer.attr(key, value);
            }
        }
        iq_result(
            iq,
            vec![
                answer
                    .children([NodeBuilder::new("list").children(users).build()])
                    .build(),
            ],
        )
    }
}

fn usync_user(view: &dyn ServerView, user: &Node, protocols: &[String]) -> Option<Node> {
    let contact_query = user
        .get_optional_child("contact")
        .and_then(|c| c.content_as_string())
        .map(|s| s.to_string());
    let jid = match jid_attr(user, "jid") {
        Some(jid) => jid.to_non_ad(),
        None => {
            let digits = super::stanza::user_of(contact_query.as_deref()?)?;
            Jid::pn(digits)
        }
    };
    let mut children = Vec::new();
    for protocol in protocols {
        match protocol.as_str() {
            "contact" => {
                let mut contact = NodeBuilder::new("contact").attr("type", "in");
                if let Some(query) = &contact_query {
                    contact = contact.string_content(query.as_str());
                }
                children.push(contact.build());
            }
            "devices" => children.push(devices_node(view, &jid)),
            "lid" => children.push(lid_node(view, &jid)),
            "status" => children.push(NodeBuilder::new("status").build()),
            // Other protocols carry profile details no test needs;
            // clients treat an absent protocol node as "no data".
            _ => {}
        }
    }
    Some(
        NodeBuilder::new("user")
            .attr("jid", jid)
            .children(children)
            .build(),
    )
}

/// `<lid val=…/>` for `user`: its LID, whichever form it was asked in.
fn lid_node(view: &dyn ServerView, user: &Jid) -> Node {
    let lid = if user.is_lid() {
        view.phone_of_lid(&user.user)
            .map(|_| Jid::lid(user.user.as_str()))
    } else {
        Some(Jid::lid(view.lid_of(&user.user)))
    };
    match lid {
        Some(lid) => NodeBuilder::new("lid").attr("val", lid).build(),
        None => NodeBuilder::new("lid").build(),
    }
}

fn devices_node(view: &dyn ServerView, user: &Jid) -> Node {
    let phone = if user.is_lid() {
        view.phone_of_lid(&user.user)
    } else {
        Some(user.user.to_string())
    };
    let account = phone.and_then(|p| view.account(&p));
    let mut devices = vec![NodeBuilder::new("device").attr("id", "0").build()];
    let mut children = Vec::new();
    if let Some(account) = account.filter(|a| !a.companions.is_empty()) {
        devices.extend(account.companions.iter().map(|c| {
            NodeBuilder::new("device")
                .attr("id", c.device.to_string())
                .attr("key-index", c.key_index.to_string())
                .build()
        }));
        children.push(NodeBuilder::new("device-list").children(devices).build());
        children.push(
            NodeBuilder::new("key-index-list")
                .attr("ts", now_secs().to_string())
                .bytes(signed_key_index_list(&account))
                .build(),
        );
    } else {
        children.push(NodeBuilder::new("device-list").children(devices).build());
    }
    NodeBuilder::new("devices").children(children).build()
}

/// The ADV key index list that makes clients keep these companions (they
/// drop a companion whose key index is not listed).
fn signed_key_index_list(account: &AccountDevices) -> Vec<u8> {
    let valid_indexes: Vec<u32> = account.companions.iter().map(|c| c.key_index).collect();
    let list = ADVKeyIndexList {
        raw_id: Some(account.raw_id),
        timestamp: Some(now_secs()),
        current_index: valid_indexes.iter().copied().max(),
        valid_indexes,
        ..Default::default()
    };
    waproto::codec::adv_signed_key_index_list_to_vec(&ADVSignedKeyIndexList {
        details: Some(waproto::codec::adv_key_index_list_to_vec(&list)),
        ..Default::default()
    })
}
