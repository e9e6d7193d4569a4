//! Durable messages end to end: real walinkd and walink, real sled files,
//! mock-wa as WhatsApp and as the contacts.

mod harness;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{Env, eventually};
use mock_wa::messaging::{Addressing, MessagingConfig, ReceiptKind};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use walink::ipc::{Client, ClientError};
use walink::wa::message_id_for_key;

const CONNECT: Duration = Duration::from_secs(40);
const CONTACT: &str = "15557654321";
const CONTACT_JID: &str = "15557654321@s.whatsapp.net";
/// How walink shows the contact's conversation.
const CONTACT_PLUS: &str = "+15557654321";

async fn paired(account: &str) -> Env {
    Env::paired(&[account], CONNECT).await
}

fn ids_of(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .expect("an array of messages")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

async fn contact_inbox_ids(env: &Env) -> Vec<String> {
    env.mock
        .inbox(CONTACT)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_delivers_every_accepted_message_exactly_once() {
    const TOTAL: usize = 2000;
    const CLIENTS: usize = 8;
    const KILL_AFTER: usize = 500;
    let mut env = paired("sales").await;

    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut burst = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let socket = env.socket();
        let accepted = accepted.clone();
        let refused = refused.clone();
        burst.spawn(async move {
            let Ok(mut client) = Client::connect(&socket).await else {
                return;
            };
            for i in (c..TOTAL).step_by(CLIENTS) {
                let key = format!("burst-{i}");
                // Every 10th request is bad input, refused before queuing.
                let to = if i % 10 == 9 { "+12" } else { CONTACT };
                let params = json!({
                    "account": "sales", "to": to, "text": format!("burst {i}"),
                    "id": key, "wait": false,
                });
                match client.call("send", params).await {
                    Ok(reply) => {
                        assert_eq!(reply["status"], "queued", "{reply}");
                        let id = reply["id"].as_str().unwrap().to_string();
                        assert_eq!(id, message_id_for_key("sales", &key));
                        accepted.lock().unwrap().push(id);
                    }
                    Err(ClientError::Rpc(_)) => {
                        refused
                            .lock()
                            .unwrap()
                            .push(message_id_for_key("sales", &key));
                    }
                    // The daemon died with the request in flight: it may
                    // or may not have been queued, so no claim either way.
                    Err(_) => return,
                }
            }
        });
    }
    eventually(
        Duration::from_secs(120),
        "the burst is under way",
        || async { (accepted.lock().unwrap().len() >= KILL_AFTER).then_some(()) },
    )
    .await;
    env.stop_daemon(libc::SIGKILL).await;
    while burst.join_next().await.is_some() {}
    let accepted = accepted.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    assert!(
        accepted.len() < TOTAL * 9 / 10,
        "killed in the middle of the burst: {} accepted",
        accepted.len()
    );
    assert!(!refused.is_empty(), "bad input was refused");

    env.start_daemon().await;
    env.wait_state("sales", "connected", CONNECT).await;
    let wanted: HashSet<&String> = accepted.iter().collect();
    eventually(
        Duration::from_secs(240),
        "every accepted message reaches the contact",
        || async {
            let got: HashSet<String> = contact_inbox_ids(&env).await.into_iter().collect();
            wanted.iter().all(|id| got.contains(*id)).then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(120), "the outbox drains", || async {
        let s = env.status("sales").await;
        (s["outbox"]["queued"] == 0).then_some(())
    })
    .await;
    let inbox = contact_inbox_ids(&env).await;
    let unique: HashSet<&String> = inbox.iter().collect();
    assert_eq!(unique.len(), inbox.len(), "no message arrived twice");
    let attempted: HashSet<String> = (0..TOTAL)
        .filter(|i| i % 10 != 9)
        .map(|i| message_id_for_key("sales", &format!("burst-{i}")))
        .collect();
    for id in &inbox {
        assert!(attempted.contains(id), "unexpected message {id}");
    }
    for id in &refused {
        assert!(!unique.contains(id), "refused message {id} was sent");
    }
    assert_eq!(env.status("sales").await["outbox"]["failed"], 0);
    eprintln!(
        "burst: {} accepted before kill -9, {} refused, {} reached the contact once each",
        accepted.len(),
        refused.len(),
        inbox.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_walinkd_is_down_are_in_history_once() {
    let mut env = paired("sales").await;
    let phone = env.phone("sales").await;
    env.stop_daemon(libc::SIGTERM).await;
    let mut sent = Vec::new();
    // LID-addressed, as today's server sends them; filed under the number
    // the message carries beside the LID.
    for i in 0..20 {
        let text = format!("while you were down {i}");
        sent.push(
            env.mock
                .deliver(CONTACT, &phone, &text, None)
                .await
                .unwrap(),
        );
    }
    env.start_daemon().await;
    let messages = eventually(CONNECT, "the offline messages are stored", || async {
        let page = env
            .walink_json(&["messages", "sales", "--limit", "100"])
            .await;
        (page["messages"].as_array().unwrap().len() >= 20).then_some(page)
    })
    .await;
    let ids = ids_of(&messages["messages"]);
    let expected: HashSet<&String> = sent.iter().collect();
    assert_eq!(ids.len(), 20, "{messages}");
    assert_eq!(ids.iter().collect::<HashSet<_>>(), expected);
    let newest = &messages["messages"][0];
    assert_eq!(newest["chat"], CONTACT_PLUS);
    assert_eq!(newest["text"], "while you were down 19", "newest first");

    // A crash and a restart must not store them again (the server does not
    // redeliver what was acked after storing).
    env.stop_daemon(libc::SIGKILL).await;
    env.start_daemon().await;
    env.wait_state("sales", "connected", CONNECT).await;
    let live = env
        .mock
        .deliver_as(CONTACT, &phone, "after the restart", None, Addressing::Pn)
        .await
        .unwrap();
    let messages = eventually(CONNECT, "the live message is stored", || async {
        let page = env
            .walink_json(&["messages", "sales", "--limit", "100"])
            .await;
        ids_of(&page["messages"]).contains(&live).then_some(page)
    })
    .await;
    let ids = ids_of(&messages["messages"]);
    assert_eq!(ids.len(), 21, "each message once: {ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 21);

    let chats = env.walink_json(&["chats", "sales"]).await;
    assert_eq!(chats["chats"].as_array().unwrap().len(), 1, "{chats}");
    assert_eq!(chats["chats"][0]["chat"], CONTACT_PLUS);
    assert_eq!(chats["chats"][0]["messages"], 21);
    let one_chat = env
        .walink_json(&["messages", "sales", "--chat", CONTACT, "--limit", "5"])
        .await;
    assert_eq!(one_chat["messages"].as_array().unwrap().len(), 5);
    let cursor = one_chat["next_cursor"].as_u64().expect("more pages");
    let next = env
        .walink_json(&[
            "messages",
            "sales",
            "--chat",
            CONTACT,
            "--limit",
            "100",
            "--before",
            &cursor.to_string(),
        ])
        .await;
    assert_eq!(next["messages"].as_array().unwrap().len(), 16);
    assert_eq!(next["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_have_no_gap_and_no_duplicate_while_messages_arrive() {
    const STORED: usize = 300;
    let env = paired("sales").await;
    let phone = env.phone("sales").await;
    let mut stored = HashSet::new();
    for i in 0..STORED {
        let id = env
            .mock
            .deliver(CONTACT, &phone, &format!("old {i}"), None)
            .await
            .unwrap();
        stored.insert(id);
    }
    eventually(CONNECT, "every message is stored", || async {
        let chats = env.call("chats", json!({"account": "sales"})).await.ok()?;
        (chats["chats"][0]["messages"].as_u64()? >= STORED as u64).then_some(())
    })
    .await;

    let mut seen = Vec::new();
    let mut arrived = 0;
    let mut before: Option<u64> = None;
    let mut last_cursor = u64::MAX;
    loop {
        let page = env
            .call(
                "messages",
                json!({"account": "sales", "limit": 50, "before": before}),
            )
            .await
            .unwrap();
        for m in page["messages"].as_array().unwrap() {
            let cursor = m["cursor"].as_u64().unwrap();
            assert!(cursor < last_cursor, "newest first, no repeat");
            last_cursor = cursor;
            seen.push(m["id"].as_str().unwrap().to_string());
        }
        // New messages keep arriving (walinkd stores them on its own time)
        // while the history is paged.
        for _ in 0..5 {
            env.mock
                .deliver("15550009999", &phone, &format!("new {arrived}"), None)
                .await
                .unwrap();
            arrived += 1;
        }
        match page["next_cursor"].as_u64() {
            Some(c) => before = Some(c),
            None => break,
        }
    }
    assert!(arrived >= 30, "messages arrived during paging");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicate");
    for id in &stored {
        assert!(unique.contains(id), "gap: {id} missing");
    }

    // Full-text search pages the same way, through the CLI.
    let first = env
        .walink_json(&["messages", "sales", "--search", "OLD 7", "--limit", "3"])
        .await;
    let texts: Vec<&str> = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["old 7"], "every word must match, case aside");
    let mut found = 0;
    let mut before: Option<u64> = None;
    loop {
        let mut args = vec!["messages", "sales", "--search", "old", "--limit", "40"];
        let cursor = before.map(|c| c.to_string());
        if let Some(c) = &cursor {
            args.extend(["--before", c.as_str()]);
        }
        let page = env.walink_json(&args).await;
        found += page["messages"].as_array().unwrap().len();
        match page["next_cursor"].as_u64() {
            Some(c) => before = Some(c),
            None => break,
        }
    }
    assert_eq!(found, STORED, "every message with the word, once");
    let table = env
        .walink(&["messages", "sales", "--search", "old", "--limit", "5"])
        .await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("walink messages sales --search \"old\" --before"),
        "the next page keeps the search: {table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_move_statuses_to_delivered_and_read() {
    let env = paired("sales").await;
    let phone = env.phone("sales").await;
    let mut events = tokio::process::Command::new(env!("CARGO_BIN_EXE_walink"))
        .arg("--socket")
        .arg(env.socket())
        .args(["events", "sales", "--json"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("walink events");
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    // `events` subscribes before it prints anything; a status call after a
    // state change proves the subscription is live.
    env.call("reconnect", json!({"account": "sales"}))
        .await
        .unwrap();
    loop {
        let line = tokio::time::timeout(CONNECT, lines.next_line())
            .await
            .expect("events within 40 s")
            .unwrap()
            .expect("events keeps running");
        let e: Value = serde_json::from_str(&line).unwrap();
        if e["kind"] == "state_changed" && e["state"] == "connected" {
            break;
        }
    }

    let out = env
        .walink(&["send", "sales", CONTACT, "please confirm", "--id", "r-1"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(id, message_id_for_key("sales", "r-1"));
    // The contact's phone sends a delivery receipt by itself; now it reads.
    env.mock
        .receipt(CONTACT, &phone, &id, ReceiptKind::Read)
        .await
        .unwrap();

    let mut statuses = Vec::new();
    while !statuses.contains(&"read".to_string()) {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("a status within 20 s")
            .unwrap()
            .expect("events keeps running");
        let e: Value = serde_json::from_str(&line).unwrap();
        if e["kind"] == "message_status" && e["id"] == id.as_str() {
            assert_eq!(e["chat"], CONTACT_JID);
            statuses.push(e["status"].as_str().unwrap().to_string());
        }
    }
    // `sent` and `server_ack` may be overtaken (the ack can be handled
    // before the sender records `sent`), but no status ever goes back.
    let order = ["queued", "sent", "server_ack", "delivered", "read"];
    let ranks: Vec<usize> = statuses
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect("a known status"))
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{statuses:?}");
    for needed in ["queued", "delivered", "read"] {
        assert!(statuses.iter().any(|s| s == needed), "{statuses:?}");
    }
    let all = env.walink_json(&["outbox", "sales", "--all"]).await;
    assert_eq!(all["messages"][0]["id"], id.as_str());
    assert_eq!(all["messages"][0]["status"], "read");
    let pending = env.walink_json(&["outbox", "sales"]).await;
    assert_eq!(pending["messages"], json!([]), "nothing pending");
    let s = env.status("sales").await;
    assert_eq!(s["outbox"], json!({"queued": 0, "failed": 0}));

    // The same key again is the same message: not sent a second time.
    let again = env
        .walink(&["send", "sales", CONTACT, "please confirm", "--id", "r-1"])
        .await;
    assert!(again.status.success());
    assert_eq!(String::from_utf8(again.stdout).unwrap().trim(), id);
    assert_eq!(contact_inbox_ids(&env).await, [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_while_disconnected_goes_out_on_reconnect() {
    let env = paired("sales").await;
    let jid = env.jid("sales").await;
    env.mock.refuse(3600);
    env.mock.fault(&jid, mock_wa::Fault::Close);
    env.wait_state("sales", "reconnecting", CONNECT).await;

    let out = env
        .walink(&["send", "sales", CONTACT, "sent while offline", "--no-wait"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let pending = env.walink_json(&["outbox", "sales"]).await;
    assert_eq!(pending["messages"][0]["id"], id.as_str());
    assert_eq!(pending["messages"][0]["status"], "queued");
    assert_eq!(env.status("sales").await["outbox"]["queued"], 1);
    let detail = env.walink(&["status", "sales"]).await;
    let detail = String::from_utf8(detail.stdout).unwrap();
    assert!(
        detail.contains("1 waiting to be sent, 0 failed"),
        "{detail}"
    );
    let table = env.walink(&["outbox", "sales"]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains(&id) && table.contains("queued"), "{table}");

    env.mock.refuse(0);
    env.call("reconnect", json!({"account": "sales"}))
        .await
        .unwrap();
    eventually(
        CONNECT,
        "the queued message reaches the contact",
        || async { (contact_inbox_ids(&env).await == [id.clone()]).then_some(()) },
    )
    .await;
    eventually(CONNECT, "the outbox is empty", || async {
        (env.status("sales").await["outbox"]["queued"] == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_does_not_slow_senders() {
    const BURST: usize = 600;
    let env = paired("sales").await;
    // Subscribes, then never reads a byte.
    let mut stalled = tokio::net::UnixStream::connect(env.socket()).await.unwrap();
    stalled
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\",\"params\":{}}\n")
        .await
        .unwrap();

    let mut client = Client::connect(&env.socket()).await.unwrap();
    let start = Instant::now();
    for i in 0..BURST {
        client
            .call(
                "send",
                json!({"account": "sales", "to": CONTACT, "text": format!("m{i}"), "wait": false}),
            )
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(180), "the burst is acked", || async {
        (env.status("sales").await["outbox"]["queued"] == 0).then_some(())
    })
    .await;
    let sent = Instant::now();
    let reply = client
        .call(
            "send",
            json!({"account": "sales", "to": CONTACT, "text": "and one more"}),
        )
        .await
        .unwrap();
    // The contact's delivery receipt may be handled before the server ack.
    assert!(
        ["server_ack", "delivered"].contains(&reply["status"].as_str().unwrap()),
        "{reply}"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "a waiting send took {:?} next to a stalled subscriber",
        sent.elapsed()
    );
    eprintln!(
        "{BURST} sends acked in {:?} next to a stalled subscriber",
        sent.duration_since(start)
    );
    let texts: Vec<String> = env
        .mock
        .inbox(CONTACT)
        .await
        .into_iter()
        .map(|e| e.text)
        .collect();
    let mut expected: Vec<String> = (0..BURST).map(|i| format!("m{i}")).collect();
    expected.push("and one more".into());
    assert_eq!(texts, expected, "each once, in the order they were queued");

    // The stalled subscriber is told what it missed when it reads again.
    let mut lines = BufReader::new(stalled).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let lagged = loop {
        assert!(
            Instant::now() < deadline,
            "no lagged notification within 30 s"
        );
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the stalled subscriber's backlog is readable")
            .unwrap()
            .expect("the subscription is still open");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["method"] == "lagged" {
            break v;
        }
    };
    assert!(lagged["params"]["missed"].as_u64().unwrap() > 0, "{lagged}");
}

/// What a walinkd killed between acking a contact's retry receipt and
/// answering it leaves behind: a message the server acked that the contact
/// never confirmed. The next walinkd writes it once more under its id;
/// the contact keeps one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_sends_unconfirmed_messages_again_under_their_ids() {
    // The contact receives but never confirms: every send stays at
    // `server_ack`.
    let quiet = MessagingConfig {
        auto_delivery_receipts: false,
    };
    let env = Env::with_mock(&["sales"], "", quiet).await;
    let mut env = Env::paired_in(env, &["sales"], CONNECT).await;
    let mut ids = Vec::new();
    for text in ["first", "second"] {
        let out = env.walink(&["send", "sales", CONTACT, text]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    let all = env.walink_json(&["outbox", "sales", "--all"]).await;
    let statuses: Vec<&str> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["server_ack", "server_ack"]);
    let messaging = env.mock.messaging().expect("messaging side").clone();
    let before = messaging.stats().messages_duplicate;

    env.stop_daemon(libc::SIGTERM).await;
    env.start_daemon().await;
    env.wait_state("sales", "connected", CONNECT).await;
    eventually(CONNECT, "both unconfirmed messages written again", || {
        let messaging = messaging.clone();
        async move { (messaging.stats().messages_duplicate >= before + 2).then_some(()) }
    })
    .await;
    let mut got = contact_inbox_ids(&env).await;
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "the contact has each message once");
    let all = env.walink_json(&["outbox", "sales", "--all"]).await;
    for m in all["messages"].as_array().unwrap() {
        assert_eq!(m["status"], "server_ack", "a resend changes no status: {m}");
    }
}
