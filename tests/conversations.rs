//! One conversation per person in the LID era, end to end: real walinkd and
//! walink, real SQLite, mock-wa writing LID-addressed, phone-addressed and
//! LID-only, and answering usync.

mod harness;

use std::time::Duration;

use harness::{Env, eventually};
use mock_wa::messaging::{Addressing, ReceiptKind, push_name};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const CONNECT: Duration = Duration::from_secs(40);
const CONTACT: &str = "15557654321";

async fn paired(account: &str) -> Env {
    Env::paired(&[account], CONNECT).await
}

fn texts(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("an array of messages")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// `walink events ACCOUNT --json`, subscribed (a reconnect it sees proves it).
async fn events(
    env: &Env,
    account: &str,
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_walink"))
        .arg("--socket")
        .arg(env.socket())
        .args(["events", account, "--json"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("walink events");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    env.call("reconnect", serde_json::json!({ "account": account }))
        .await
        .unwrap();
    next_event(&mut lines, |e| {
        e["kind"] == "state_changed" && e["state"] == "connected"
    })
    .await;
    (child, lines)
}

async fn next_event(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let line = tokio::time::timeout(CONNECT, lines.next_line())
            .await
            .expect("an event within 40 s")
            .unwrap()
            .expect("events keeps running");
        let e: Value = serde_json::from_str(&line).unwrap();
        if wanted(&e) {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_writing_by_lid_and_by_number_is_one_conversation() {
    let env = paired("sales").await;
    let phone = env.phone("sales").await;
    let lid = format!("{}@lid", env.mock.lid_of(CONTACT));
    let plus = format!("+{CONTACT}");
    let (_events, mut lines) = events(&env, "sales").await;

    let first = env
        .mock
        .deliver_as(CONTACT, &phone, "hello, by LID", None, Addressing::Lid)
        .await
        .unwrap();
    let received = next_event(&mut lines, |e| {
        e["kind"] == "message_received" && e["message"]["id"] == first.as_str()
    })
    .await["message"]
        .clone();
    assert_eq!(received["chat"], plus.as_str(), "{received}");
    assert_eq!(received["sender"], lid.as_str(), "named as it arrived");
    assert_eq!(received["sender_phone"], plus.as_str());
    assert_eq!(received["sender_lid"], lid.as_str());
    assert_eq!(received["sender_name"], push_name(CONTACT).as_str());
    assert_eq!(received["from_me"], false);
    assert_eq!(received["kind"], "text");
    assert_eq!(received["text"], "hello, by LID");

    let out = env.walink(&["send", "sales", &plus, "our answer"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = env.walink(&["send", "sales", &lid, "by your LID"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_lid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let third = env
        .mock
        .deliver_as(CONTACT, &phone, "and by number", None, Addressing::Pn)
        .await
        .unwrap();
    next_event(&mut lines, |e| {
        e["kind"] == "message_received" && e["message"]["id"] == third.as_str()
    })
    .await;

    let chats = env.walink_json(&["chats", "sales"]).await;
    let rows = chats["chats"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one person, one chat: {chats}");
    let row = &rows[0];
    assert_eq!(row["chat"], plus.as_str());
    assert_eq!(row["phone"], plus.as_str());
    assert_eq!(row["lid"], lid.as_str());
    assert_eq!(row["name"], push_name(CONTACT).as_str());
    assert_eq!(row["kind"], "person");
    assert_eq!(row["messages"], 4);
    assert!(row["last_at"].as_u64().unwrap() > 0);

    // Any address of the person names the same conversation, in order.
    for chat in [
        plus.as_str(),
        lid.as_str(),
        &format!("{CONTACT}@s.whatsapp.net"),
    ] {
        let page = env
            .walink_json(&["messages", "sales", "--chat", chat])
            .await;
        assert_eq!(
            texts(&page),
            [
                "and by number",
                "by your LID",
                "our answer",
                "hello, by LID"
            ],
            "--chat {chat}: {page}"
        );
        let from_me: Vec<bool> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["from_me"].as_bool().unwrap())
            .collect();
        assert_eq!(from_me, [false, true, true, false]);
        assert_eq!(page["messages"][1]["id"], by_lid.as_str());
        assert_eq!(page["messages"][2]["id"], answer.as_str());
        assert_eq!(page["messages"][2]["chat"], plus.as_str());
    }

    // The contact's phone acknowledges from the number the answers were
    // written to (delivered), then reads them from its LID: statuses
    // follow the message id, whatever address a receipt names.
    let sent_to = env.mock.inbox(CONTACT).await;
    let ids: Vec<&str> = sent_to.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [answer.as_str(), by_lid.as_str()], "each answer once");
    eventually(CONNECT, "both answers are delivered", || async {
        let page = env
            .walink_json(&["messages", "sales", "--chat", &plus])
            .await;
        (page["messages"][1]["status"] == "delivered"
            && page["messages"][2]["status"] == "delivered")
            .then_some(())
    })
    .await;
    for id in [&answer, &by_lid] {
        env.mock
            .receipt_as(CONTACT, &phone, id, ReceiptKind::Read, Addressing::Lid)
            .await
            .unwrap();
    }
    eventually(CONNECT, "both answers are read", || async {
        let page = env
            .walink_json(&["messages", "sales", "--chat", &plus])
            .await;
        (page["messages"][1]["status"] == "read" && page["messages"][2]["status"] == "read")
            .then_some(())
    })
    .await;
    let all = env.walink_json(&["outbox", "sales", "--all"]).await;
    for m in all["messages"].as_array().unwrap() {
        assert_eq!(m["status"], "read", "{all}");
    }

    let contacts = env.walink_json(&["contacts", "sales"]).await;
    assert_eq!(
        contacts["contacts"],
        serde_json::json!([{"phone": plus, "lid": lid, "name": push_name(CONTACT)}]),
    );
    let table = env.walink(&["chats", "sales"]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains(&plus) && table.contains("person"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_arrived_before_the_mapping_joins_the_person_once_it_is_known() {
    let env = paired("sales").await;
    let phone = env.phone("sales").await;
    let lid = format!("{}@lid", env.mock.lid_of(CONTACT));
    let plus = format!("+{CONTACT}");

    let hidden = env
        .mock
        .deliver_as(
            CONTACT,
            &phone,
            "number not shown",
            None,
            Addressing::LidOnly,
        )
        .await
        .unwrap();
    let chats = eventually(CONNECT, "the LID-only message is stored", || async {
        let chats = env.walink_json(&["chats", "sales"]).await;
        (chats["chats"].as_array().unwrap().len() == 1).then_some(chats)
    })
    .await;
    assert_eq!(chats["chats"][0]["chat"], lid.as_str(), "{chats}");
    assert_eq!(chats["chats"][0]["phone"], Value::Null);
    let page = env
        .walink_json(&["messages", "sales", "--chat", &lid])
        .await;
    assert_eq!(page["messages"][0]["id"], hidden.as_str());
    assert_eq!(page["messages"][0]["sender_phone"], Value::Null);

    // Asking the server maps the number to its LID.
    let checked = env
        .walink_json(&["contacts", "sales", "--check", &plus, "+1 555 000 1111"])
        .await;
    let checked = checked["contacts"].as_array().unwrap();
    assert_eq!(checked.len(), 2, "{checked:?}");
    assert_eq!(checked[0]["phone"], plus.as_str());
    assert_eq!(checked[0]["on_whatsapp"], true);
    assert_eq!(checked[0]["lid"], lid.as_str());
    assert_eq!(checked[1]["phone"], "+15550001111");

    let chats = env.walink_json(&["chats", "sales"]).await;
    let rows = chats["chats"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "merged, not doubled: {chats}");
    assert_eq!(rows[0]["chat"], plus.as_str());
    assert_eq!(rows[0]["lid"], lid.as_str());
    assert_eq!(rows[0]["messages"], 1);
    let page = env
        .walink_json(&["messages", "sales", "--chat", &plus])
        .await;
    assert_eq!(texts(&page), ["number not shown"]);
    assert_eq!(page["messages"][0]["sender_phone"], plus.as_str());

    // What comes next by LID only lands in the same conversation.
    env.mock
        .deliver_as(CONTACT, &phone, "again hidden", None, Addressing::LidOnly)
        .await
        .unwrap();
    eventually(CONNECT, "the second message joins the chat", || async {
        let page = env
            .walink_json(&["messages", "sales", "--chat", &plus])
            .await;
        (texts(&page) == ["again hidden", "number not shown"]).then_some(())
    })
    .await;
    let chats = env.walink_json(&["chats", "sales"]).await;
    assert_eq!(chats["chats"].as_array().unwrap().len(), 1, "{chats}");

    let bad = env.walink(&["contacts", "sales", "--check", "12"]).await;
    assert_eq!(
        bad.status.code(),
        Some(64),
        "a malformed number is a usage error"
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid phone number"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_posts_with_its_members_as_people_and_takes_our_posts() {
    const OTHER: &str = "15551112222";
    let env = paired("sales").await;
    let phone = env.phone("sales").await;
    let group = env
        .mock
        .create_group("Support team", &[CONTACT, OTHER], &phone)
        .await
        .unwrap();
    let lid = format!("{}@lid", env.mock.lid_of(CONTACT));
    let plus = format!("+{CONTACT}");

    let first = env
        .mock
        .post_to_group(CONTACT, &group, "hello group", None)
        .await
        .unwrap();
    env.mock
        .post_to_group(OTHER, &group, "me too", None)
        .await
        .unwrap();
    let page = eventually(CONNECT, "both posts are stored", || async {
        let page = env
            .walink_json(&["messages", "sales", "--chat", &group])
            .await;
        (page["messages"].as_array().unwrap().len() == 2).then_some(page)
    })
    .await;
    let post = &page["messages"][1];
    assert_eq!(post["id"], first.as_str(), "{page}");
    assert_eq!(post["chat"], group.as_str());
    assert_eq!(post["sender"], lid.as_str());
    assert_eq!(post["sender_phone"], plus.as_str());
    assert_eq!(post["sender_lid"], lid.as_str());
    assert_eq!(post["sender_name"], push_name(CONTACT).as_str());
    assert_eq!(page["messages"][0]["sender_phone"], format!("+{OTHER}"));

    let out = env
        .walink(&["send", "sales", &group, "hello from walink"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let recorded = env.mock.group_inbox(&group).await;
    assert_eq!(recorded.len(), 1, "the mock recorded our post once");
    assert_eq!(
        (recorded[0].id.as_str(), recorded[0].text.as_str()),
        (ours.as_str(), "hello from walink")
    );

    let listed = env.walink_json(&["groups", "sales"]).await;
    let groups = listed["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{listed}");
    assert_eq!(groups[0]["jid"], group.as_str());
    assert_eq!(groups[0]["subject"], "Support team");
    let members = groups[0]["participants"].as_array().unwrap();
    assert_eq!(members.len(), 3, "two contacts and the account: {listed}");
    let creator = members
        .iter()
        .find(|m| m["phone"] == plus.as_str())
        .expect("the first contact is a member");
    assert_eq!(creator["lid"], lid.as_str());
    assert_eq!(creator["admin"], true, "the creator is its superadmin");
    assert!(members.iter().any(|m| m["phone"] == format!("+{phone}")));

    // The group is one chat, named by its subject once listed; its
    // members are people of their own, not chats.
    let chats = env.walink_json(&["chats", "sales"]).await;
    let rows = chats["chats"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{chats}");
    assert_eq!(rows[0]["chat"], group.as_str());
    assert_eq!(rows[0]["kind"], "group");
    assert_eq!(rows[0]["name"], "Support team");
    assert_eq!(rows[0]["messages"], 3);
    let page = env
        .walink_json(&["messages", "sales", "--chat", &group])
        .await;
    assert_eq!(texts(&page), ["hello from walink", "me too", "hello group"]);
    assert_eq!(page["messages"][0]["from_me"], true);
    let table = env.walink(&["groups", "sales"]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("Support team") && table.contains(&plus),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reactions_edits_and_deletions_change_the_history() {
    use whatsapp_rust::waproto::buffa;
    use whatsapp_rust::waproto::whatsapp::{self as wa, message::protocol_message::Type};
    let env = paired("sales").await;
    let phone = env.phone("sales").await;
    let plus = format!("+{CONTACT}");
    let history = || async {
        env.walink_json(&["messages", "sales", "--chat", &plus])
            .await
    };
    let key = |id: &str| {
        buffa::MessageField::some(wa::MessageKey {
            remote_jid: Some(format!("{phone}@s.whatsapp.net")),
            from_me: Some(false),
            id: Some(id.to_string()),
            ..Default::default()
        })
    };

    let original = env
        .mock
        .deliver(CONTACT, &phone, "first version", None)
        .await
        .unwrap();
    let reply = wa::Message {
        extended_text_message: buffa::MessageField::some(wa::message::ExtendedTextMessage {
            text: Some("a reply".into()),
            context_info: buffa::MessageField::some(wa::ContextInfo {
                stanza_id: Some(original.clone()),
                participant: Some(format!("{CONTACT}@s.whatsapp.net")),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let reply = env
        .mock
        .deliver_message(CONTACT, &phone, reply, None, Addressing::Lid)
        .await
        .unwrap();
    let page = eventually(CONNECT, "both messages are stored", || async {
        let page = history().await;
        (page["messages"].as_array().unwrap().len() == 2).then_some(page)
    })
    .await;
    assert_eq!(page["messages"][0]["id"], reply.as_str());
    assert_eq!(page["messages"][0]["reply_to"], original.as_str(), "{page}");
    assert_eq!(page["messages"][1]["reply_to"], Value::Null);

    let react = wacore::proto_helpers::build_reaction_message(
        wa::MessageKey {
            remote_jid: Some(format!("{phone}@s.whatsapp.net")),
            from_me: Some(false),
            id: Some(original.clone()),
            ..Default::default()
        },
        "👍",
        1,
    );
    env.mock
        .deliver_message(CONTACT, &phone, react, None, Addressing::Lid)
        .await
        .unwrap();
    let edit = wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            key: key(&original),
            r#type: Some(Type::MESSAGE_EDIT),
            edited_message: buffa::MessageField::some(wa::Message {
                conversation: Some("second version".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    env.mock
        .deliver_message(CONTACT, &phone, edit, None, Addressing::Lid)
        .await
        .unwrap();
    let revoke = wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            key: key(&reply),
            r#type: Some(Type::REVOKE),
            ..Default::default()
        }),
        ..Default::default()
    };
    env.mock
        .deliver_message(CONTACT, &phone, revoke, None, Addressing::Lid)
        .await
        .unwrap();

    let page = eventually(CONNECT, "the changes are applied", || async {
        let page = history().await;
        let changed = page["messages"][1]["edited"] == true
            && page["messages"][0]["revoked"] == true
            && !page["messages"][1]["reactions"].as_array()?.is_empty();
        changed.then_some(page)
    })
    .await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        2,
        "changes are not messages of their own: {page}"
    );
    let (replied, first) = (&messages[0], &messages[1]);
    assert_eq!(first["text"], "second version");
    assert_eq!(first["revoked"], false);
    assert_eq!(
        first["reactions"],
        serde_json::json!([{"emoji": "👍", "by": plus, "by_phone": plus,
            "by_lid": format!("{}@lid", env.mock.lid_of(CONTACT))}])
    );
    assert_eq!(
        replied["text"],
        Value::Null,
        "a deletion for everyone drops the text"
    );
    assert_eq!(replied["edited"], false);
    assert_eq!(replied["reply_to"], original.as_str());
    // The search index follows the edit.
    let found = env
        .walink_json(&["messages", "sales", "--search", "second"])
        .await;
    assert_eq!(found["messages"][0]["id"], original.as_str());
    let gone = env
        .walink_json(&["messages", "sales", "--search", "first"])
        .await;
    assert_eq!(gone["messages"], serde_json::json!([]));

    // And going out: a reply quotes its message, a reaction lands on it.
    let out = env
        .walink(&["send", "sales", &plus, "our reply", "--reply-to", &original])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = env.walink(&["react", "sales", &original, "❤"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reaction = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let got: Vec<(String, String)> = env
        .mock
        .inbox(CONTACT)
        .await
        .into_iter()
        .map(|e| (e.id, e.text))
        .collect();
    assert_eq!(
        got,
        [
            (ours.clone(), format!("[reply to {original}] our reply")),
            (reaction, format!("[reaction ❤ to {original}]")),
        ]
    );
    let page = history().await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        3,
        "a reaction is no message of its own: {page}"
    );
    assert_eq!(messages[0]["id"], ours.as_str());
    assert_eq!(messages[0]["from_me"], true);
    assert_eq!(messages[0]["reply_to"], original.as_str());
    let emojis: Vec<(&str, &str)> = messages[2]["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["emoji"].as_str().unwrap(), r["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        emojis,
        [("👍", plus.as_str()), ("❤", format!("+{phone}").as_str())]
    );

    let unknown = env
        .walink(&["react", "sales", "3EB0NOSUCHMESSAGE", "👍"])
        .await;
    assert!(!unknown.status.success());
    let why = String::from_utf8_lossy(&unknown.stderr);
    assert!(why.contains("has no message 3EB0NOSUCHMESSAGE"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_keeps_its_caption_and_what_the_message_says_of_the_file() {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let env = paired("sales").await;
    let phone = env.phone("sales").await;
    let plus = format!("+{CONTACT}");
    let photo: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let pdf = b"%PDF-1.4 an invoice".to_vec();
    let hex = |data: &[u8]| {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let request =
        |kind: &str, mimetype: &str, filename: Option<&str>, caption: Option<&str>, data: &[u8]| {
            mock_wa::messaging::MediaRequest {
                kind: kind.into(),
                mimetype: mimetype.into(),
                filename: filename.map(str::to_owned),
                caption: caption.map(str::to_owned),
                data_base64: base64::engine::general_purpose::STANDARD.encode(data),
            }
        };
    let image = env
        .mock
        .deliver_media(
            CONTACT,
            &phone,
            &request("image", "image/jpeg", None, Some("the parcel"), &photo),
            None,
        )
        .await
        .unwrap();
    let document = env
        .mock
        .deliver_media(
            CONTACT,
            &phone,
            &request(
                "document",
                "application/pdf",
                Some("invoice.pdf"),
                None,
                &pdf,
            ),
            None,
        )
        .await
        .unwrap();
    let page = eventually(CONNECT, "both media messages are stored", || async {
        let page = env
            .walink_json(&["messages", "sales", "--chat", &plus])
            .await;
        (page["messages"].as_array().unwrap().len() == 2).then_some(page)
    })
    .await;
    let by_id = |id: &str| {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {page}"))
    };
    let img = by_id(&image);
    assert_eq!(img["kind"], "image");
    assert_eq!(img["text"], "the parcel", "the caption is the text");
    assert_eq!(img["media"]["mimetype"], "image/jpeg");
    assert_eq!(img["media"]["size"], photo.len());
    assert_eq!(img["media"]["sha256"], hex(&photo));
    let doc = by_id(&document);
    assert_eq!(doc["kind"], "document");
    assert_eq!(doc["media"]["filename"], "invoice.pdf");
    assert_eq!(doc["media"]["sha256"], hex(&pdf));
    assert_eq!(doc["media"]["size"], pdf.len());
    let found = env
        .walink_json(&["messages", "sales", "--search", "parcel"])
        .await;
    assert_eq!(
        found["messages"][0]["id"],
        image.as_str(),
        "captions are searchable"
    );
}
