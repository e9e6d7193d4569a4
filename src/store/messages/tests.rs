use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::store::Fault;

fn inbound(chat: &str, id: &str, timestamp: i64) -> Inbound {
    Inbound {
        id: id.to_owned(),
        chat: chat.to_owned(),
        sender: chat.to_owned(),
        from_me: false,
        timestamp,
        text: Some(format!("text of {id}")),
        description: None,
    }
}

fn open(dir: &tempfile::TempDir) -> MessageStore {
    MessageDb::open(&messages_db_path(dir.path()), None)
        .unwrap()
        .account("sales")
        .unwrap()
}

#[tokio::test]
async fn outbox_round_trip_survives_reopen_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        for i in 0..5 {
            let e = store
                .enqueue(&format!("ID{i}"), "1555@s.whatsapp.net", "hi", None, 10)
                .await
                .unwrap();
            assert!(e.created);
            assert_eq!(e.record.status, DeliveryStatus::Queued);
        }
        store
            .advance("ID1", DeliveryStatus::Sent, None, 11)
            .await
            .unwrap()
            .unwrap();
        store
            .advance("ID1", DeliveryStatus::ServerAck, None, 12)
            .await
            .unwrap()
            .unwrap();
    }
    let store = open(&dir);
    let pending: Vec<String> = store
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(pending, ["ID0", "ID2", "ID3", "ID4"]);
    let acked = store.outgoing("ID1").await.unwrap().unwrap();
    assert_eq!(acked.status, DeliveryStatus::ServerAck);
    assert_eq!(acked.attempts, 1);
    // Sequences continue after a reopen instead of reusing old ones.
    let e = store
        .enqueue("ID5", "1555@s.whatsapp.net", "hi", None, 13)
        .await
        .unwrap();
    assert_eq!(e.record.seq, 6);
    assert_eq!(
        store.counts(),
        OutboxCounts {
            queued: 5,
            failed: 0
        }
    );
}

#[tokio::test]
async fn same_id_is_queued_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let first = store
        .enqueue("K", "1@s.whatsapp.net", "one", Some("key"), 1)
        .await
        .unwrap();
    let again = store
        .enqueue("K", "1@s.whatsapp.net", "two", Some("key"), 2)
        .await
        .unwrap();
    assert!(first.created && !again.created);
    assert_eq!(again.record, first.record, "the stored message comes back");
    assert_eq!(store.pending().await.unwrap().len(), 1);
}

#[tokio::test]
async fn statuses_only_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .enqueue("A", "1@s.whatsapp.net", "x", None, 1)
        .await
        .unwrap();
    // A receipt that overtakes the ack wins; the late ack changes nothing.
    assert!(
        store
            .advance("A", DeliveryStatus::Delivered, None, 2)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .advance("A", DeliveryStatus::ServerAck, None, 3)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .advance("A", DeliveryStatus::Failed, Some("late".into()), 3)
            .await
            .unwrap()
            .is_none(),
        "a delivered message cannot fail"
    );
    assert_eq!(
        store.outgoing("A").await.unwrap().unwrap().status,
        DeliveryStatus::Delivered
    );
    assert!(store.pending().await.unwrap().is_empty());

    store
        .enqueue("B", "1@s.whatsapp.net", "x", None, 1)
        .await
        .unwrap();
    let r = store
        .retry_later("B", "server busy".into(), 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.status, r.attempts, r.last_error.as_deref()),
        (DeliveryStatus::Queued, 1, Some("server busy"))
    );
    let failed = store
        .advance("B", DeliveryStatus::Failed, Some("refused".into()), 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.last_error.as_deref(), Some("refused"));
    assert_eq!(
        store.counts(),
        OutboxCounts {
            queued: 0,
            failed: 1
        }
    );
    assert_eq!(store.failed().await.unwrap()[0].id, "B");
    assert!(
        store
            .advance("nope", DeliveryStatus::Read, None, 6)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn inbox_dedupes_by_chat_sender_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let batch = [inbound("a@s", "1", 100), inbound("b@s", "1", 101)];
    assert_eq!(store.store_inbound(&batch, 1).await.unwrap().len(), 2);
    // A redelivery of the whole batch adds nothing.
    assert!(store.store_inbound(&batch, 2).await.unwrap().is_empty());
    let again = [inbound("a@s", "1", 100), inbound("a@s", "2", 102)];
    let stored = store.store_inbound(&again, 3).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].message.id, "2");
    let page = store.messages(None, None, None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 3);
    assert_eq!(page.next_cursor, None);
    let chats = store.chats().await.unwrap();
    assert_eq!(chats.len(), 2);
    assert_eq!(
        (
            chats[0].chat.as_str(),
            chats[0].count,
            chats[0].last_timestamp
        ),
        ("a@s", 2, 102)
    );
    assert_eq!((chats[1].chat.as_str(), chats[1].count), ("b@s", 1));
    drop(store);
    let store = open(&dir);
    assert!(
        store
            .store_inbound(&[inbound("b@s", "1", 101)], 4)
            .await
            .unwrap()
            .is_empty(),
        "the dedupe index survives a reopen"
    );
}

#[tokio::test]
async fn pages_have_no_gap_and_no_duplicate_while_messages_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let initial: Vec<Inbound> = (0..10_000)
        .map(|i| inbound(if i % 3 == 0 { "x@s" } else { "y@s" }, &format!("m{i}"), i))
        .collect();
    for chunk in initial.chunks(500) {
        store.store_inbound(chunk, 1).await.unwrap();
    }
    let mut seen = HashSet::new();
    let mut last_seq = u64::MAX;
    let mut cursor = None;
    let mut arriving = 0;
    loop {
        let page = store.messages(None, None, cursor, 50).await.unwrap();
        assert!(page.messages.len() <= 50);
        for m in &page.messages {
            assert!(m.seq < last_seq, "newest first, strictly");
            last_seq = m.seq;
            assert!(
                seen.insert(m.message.id.clone()),
                "duplicate {}",
                m.message.id
            );
        }
        // New messages keep arriving between pages.
        let new = [inbound("z@s", &format!("new{arriving}"), 0)];
        store.store_inbound(&new, 2).await.unwrap();
        arriving += 1;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: HashSet<String> = initial.iter().map(|m| m.id.clone()).collect();
    assert_eq!(seen, expected, "every message that was there, once");
    assert_eq!(arriving, 200);

    // One chat pages the same way and holds only its own messages.
    let mut chat_ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.messages(Some("x@s"), None, cursor, 50).await.unwrap();
        chat_ids.extend(page.messages.iter().map(|m| {
            assert_eq!(m.message.chat, "x@s");
            m.message.id.clone()
        }));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(chat_ids.len(), 3334);
    let unique: HashSet<_> = chat_ids.iter().collect();
    assert_eq!(unique.len(), chat_ids.len());
}

#[tokio::test]
async fn retention_drops_the_oldest_and_never_pending_sends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..10 {
        store
            .store_inbound(&[inbound("a@s", &format!("m{i}"), i)], 1_000 * i as u64)
            .await
            .unwrap();
    }
    let pruned = store
        .prune(
            Retention {
                max_age: None,
                max_messages: Some(4),
            },
            10_000,
        )
        .await
        .unwrap();
    assert_eq!(pruned.inbox, 6);
    let ids: Vec<String> = store
        .messages(None, None, None, 100)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.message.id)
        .collect();
    assert_eq!(ids, ["m9", "m8", "m7", "m6"]);
    assert_eq!(store.chats().await.unwrap()[0].count, 4);
    // A pruned message is forgotten entirely: a redelivery stores it again.
    assert_eq!(
        store
            .store_inbound(&[inbound("a@s", "m0", 0)], 10_000)
            .await
            .unwrap()
            .len(),
        1
    );

    // Age: received before now - 2.5 s goes.
    let pruned = store
        .prune(
            Retention {
                max_age: Some(Duration::from_millis(2_500)),
                max_messages: None,
            },
            10_000,
        )
        .await
        .unwrap();
    assert_eq!(pruned.inbox, 2, "m6 and m7 arrived before 7.5 s");
    assert_eq!(
        store
            .messages(None, None, None, 100)
            .await
            .unwrap()
            .messages
            .len(),
        3
    );

    for i in 0..4 {
        store
            .enqueue(&format!("o{i}"), "1@s.whatsapp.net", "x", None, i)
            .await
            .unwrap();
    }
    store
        .advance("o1", DeliveryStatus::ServerAck, None, 5)
        .await
        .unwrap();
    store
        .advance("o2", DeliveryStatus::Read, None, 5)
        .await
        .unwrap();
    let pruned = store
        .prune(
            Retention {
                max_age: None,
                max_messages: Some(1),
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(pruned.outbox, 2, "only the finished ones");
    let left: Vec<String> = store
        .recent_outgoing(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, ["o3", "o0"]);
    assert!(store.outgoing("o1").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_all_complete_in_sequence_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..50 {
                store
                    .enqueue(&format!("c{c}-{i}"), "1@s.whatsapp.net", "x", None, 1)
                    .await
                    .unwrap();
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    })
    .await
    .expect("400 concurrent enqueues finish");
    let pending = store.pending().await.unwrap();
    assert_eq!(pending.len(), 400);
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    // Each client's messages keep the order it queued them in.
    for c in 0..8 {
        let mine: Vec<u32> = pending
            .iter()
            .filter_map(|r| r.id.strip_prefix(&format!("c{c}-"))?.parse().ok())
            .collect();
        assert_eq!(mine, (0..50).collect::<Vec<u32>>());
    }
}

#[tokio::test]
async fn requeue_puts_back_what_is_missing_and_never_a_second_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let acked = store
        .enqueue("ACKED", "1@s.whatsapp.net", "a", None, 1)
        .await
        .unwrap()
        .record;
    let pending = store
        .enqueue("PENDING", "1@s.whatsapp.net", "b", None, 2)
        .await
        .unwrap()
        .record;
    // What a backup generation held: both pending.
    let generation = vec![acked.clone(), pending.clone()];
    store
        .advance("ACKED", DeliveryStatus::ServerAck, None, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.requeue(generation.clone()).await.unwrap(), 0);
    assert_eq!(
        store.outgoing("ACKED").await.unwrap().unwrap().status,
        DeliveryStatus::ServerAck,
        "an ack since the generation stands"
    );
    assert_eq!(store.counts().queued, 1);

    // The outbox lost (a new messages.db): both come back, once.
    let other = tempfile::tempdir().unwrap();
    let fresh = open(&other);
    assert_eq!(fresh.requeue(generation.clone()).await.unwrap(), 2);
    assert_eq!(fresh.requeue(generation).await.unwrap(), 0);
    let ids: Vec<String> = fresh
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["ACKED", "PENDING"]);
    assert_eq!(fresh.counts().queued, 2);
}

#[tokio::test]
async fn a_damaged_file_fails_its_check_as_damage_and_the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = messages_db_path(dir.path());
    {
        let store = open(&dir);
        let batch: Vec<Inbound> = (0..2000)
            .map(|i| inbound("a@s", &format!("m{i}"), i))
            .collect();
        store.store_inbound(&batch, 1).await.unwrap();
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 2..len / 2 + 8192] {
        *b ^= 0x5A;
    }
    std::fs::write(&path, bytes).unwrap();
    let err = MessageDb::open(&path, None).unwrap_err();
    assert_eq!(err.fault(), Fault::Damaged, "{err}");
}

#[tokio::test]
async fn search_finds_every_word_pages_and_follows_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut batch = Vec::new();
    for i in 0..120 {
        let mut m = inbound(if i % 2 == 0 { "a@s" } else { "b@s" }, &format!("m{i}"), i);
        m.text = Some(if i % 3 == 0 {
            format!("the parcel {i} has shipped")
        } else {
            format!("hello number {i}")
        });
        batch.push(m);
    }
    store.store_inbound(&batch, 1).await.unwrap();
    let mut found = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .messages(None, Some("PARCEL shipped"), cursor, 7)
            .await
            .unwrap();
        found.extend(page.messages.iter().map(|m| m.message.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..120)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(found, expected, "every match, newest first, across pages");
    let in_chat = store
        .messages(Some("a@s"), Some("parcel"), None, 100)
        .await
        .unwrap();
    assert_eq!(in_chat.messages.len(), 20, "matches of one chat only");
    // FTS5 syntax in the input is only text.
    for odd in ["\"", "AND OR NOT", "parcel*", "(", "col:x", ""] {
        store.messages(None, Some(odd), None, 10).await.unwrap();
    }
    store
        .prune(
            Retention {
                max_age: None,
                max_messages: Some(10),
            },
            2,
        )
        .await
        .unwrap();
    let left = store
        .messages(None, Some("parcel"), None, 100)
        .await
        .unwrap();
    let ids: Vec<String> = left.messages.into_iter().map(|m| m.message.id).collect();
    assert_eq!(
        ids,
        ["m117", "m114", "m111"],
        "pruned messages leave the index"
    );
}

#[tokio::test]
async fn what_a_send_needs_comes_in_one_read_with_its_context_and_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .store_inbound(&[inbound("1000@lid", "q1", 5)], 1)
        .await
        .unwrap();
    let own = "1@s.whatsapp.net";
    let reply = Draft {
        id: "r1".into(),
        to: "1000@lid".into(),
        text: "an answer".into(),
        reply_to: Some("q1".into()),
        ..Draft::default()
    };
    store
        .send_filed(reply, Address::Lid("1000".into()), own, 2)
        .await
        .unwrap();
    let photo = OutgoingMedia {
        kind: MediaKind::Image,
        mimetype: "image/png".into(),
        filename: None,
        size: 4,
        sha256: "ab".repeat(32),
        media_key: [7; 32],
        upload: None,
    };
    let with_file = Draft {
        id: "p1".into(),
        to: "1000@lid".into(),
        text: "a caption".into(),
        media: Some(MediaDraft {
            media: photo.clone(),
            data: b"\x89PNG".to_vec(),
        }),
        ..Draft::default()
    };
    store
        .send_filed(with_file, Address::Lid("1000".into()), own, 3)
        .await
        .unwrap();
    store
        .enqueue("t1", "1000@lid", "a text", None, 4)
        .await
        .unwrap();
    store
        .advance("t1", DeliveryStatus::Sent, None, 5)
        .await
        .unwrap()
        .unwrap();

    let all = store.to_send(true).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|s| s.record.id.as_str()).collect();
    assert_eq!(
        ids,
        ["r1", "p1", "t1"],
        "every pending message, oldest first"
    );
    assert_eq!(
        all[0].context,
        Some(Context {
            reply_to: Some("q1".into()),
            react_to: None,
            edit_of: None,
            revoke_of: None,
            sender: Some("1000@lid".into()),
            from_me: false,
            text: Some("text of q1".into()),
        })
    );
    assert_eq!(all[0].media, None);
    assert_eq!(all[1].context, None);
    assert_eq!(all[1].media, Some(photo.clone()));
    assert_eq!(all[1].record.text, "a caption");
    assert_eq!((&all[2].context, &all[2].media), (&None, &None));
    assert_eq!(all[2].record.status, DeliveryStatus::Sent);

    let queued: Vec<String> = store
        .to_send(false)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.record.id)
        .collect();
    assert_eq!(queued, ["r1", "p1"], "only what no connection has written");

    for (i, expected) in all.iter().enumerate() {
        let one = store.sendable(&expected.record.id).await.unwrap();
        assert_eq!(one.as_ref(), Some(expected), "message {i} read alone");
    }
    assert_eq!(store.sendable("nope").await.unwrap(), None);

    // Acked: no longer to send, but a retry receipt still finds its file.
    store
        .advance("p1", DeliveryStatus::ServerAck, None, 6)
        .await
        .unwrap()
        .unwrap();
    let left: Vec<String> = store
        .to_send(true)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.record.id)
        .collect();
    assert_eq!(left, ["r1", "t1"]);
    let acked = store.sendable("p1").await.unwrap().unwrap();
    assert_eq!(acked.record.status, DeliveryStatus::ServerAck);
    assert_eq!(acked.media, Some(photo));
}

/// The outbox reads a connection makes on every send batch (and at each
/// connect) go through their partial index, not through every message the
/// account ever sent, and are prepared once per connection, not parsed
/// again at every run.
#[tokio::test]
async fn outbox_reads_use_their_partial_index_and_are_prepared_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .enqueue("A1", "1@s.whatsapp.net", "x", None, 1)
        .await
        .unwrap();
    for (filter, index) in [
        (PENDING, "outbox_pending"),
        (QUEUED, "outbox_pending"),
        (PENDING_TEXTS, "outbox_pending"),
        (FAILED, "outbox_failed"),
    ] {
        let (plan, reprepared): (Vec<String>, i32) = store
            .read("plan a read", move |conn, account| {
                let sql = sql::outgoing_sql(filter, "ASC");
                let plan = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?
                    .query_map(params![account, -1], |row| row.get(3))?
                    .collect::<rusqlite::Result<_>>()?;
                for other in ["someone else", account, "someone else"] {
                    sql::outgoing_where(conn, other, filter, "ASC", -1)?;
                }
                let reprepared = conn
                    .prepare_cached(&sql)?
                    .get_status(rusqlite::StatementStatus::RePrepare);
                Ok((plan, reprepared))
            })
            .await
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains(index)),
            "{filter}: {plan:?}"
        );
        assert_eq!(reprepared, 0, "{filter}");
    }
}

/// The received messages the library buffers until the inbox holds them:
/// committed when the store returns (another connection reads them), kept
/// per account and (chat, sender, id) across a reopen, swept strictly
/// before the cutoff, and gone with the session, another account's
/// staying.
#[tokio::test]
async fn buffered_received_messages_are_committed_per_account_and_go_with_the_session() {
    use wacore::store::traits::{PendingInboundKey, PendingInboundRow};
    let row = |chat, sender, id, message| PendingInboundRow {
        chat,
        sender,
        id,
        message,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = messages_db_path(dir.path());
    {
        let db = MessageDb::open(&path, None).unwrap();
        let (sales, other) = (db.account("sales").unwrap(), db.account("other").unwrap());
        sales
            .buffer_inbound(
                &[
                    row("c", "s", "1", b"one"),
                    row("c", "t", "1", b"two"),
                    row("d", "s", "1", b"three"),
                ],
                100,
            )
            .await
            .unwrap();
        other
            .buffer_inbound(&[row("c", "s", "1", b"other's")], 100)
            .await
            .unwrap();
        let buffered: u64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM pending_inbound", [], |row| row.get(0))
            .unwrap();
        assert_eq!(buffered, 4, "committed before the store returned");
    }

    let db = MessageDb::open(&path, None).unwrap();
    let (sales, other) = (db.account("sales").unwrap(), db.account("other").unwrap());
    for (chat, sender, message) in [("c", "s", b"one"), ("c", "t", b"two")] {
        assert_eq!(
            sales.buffered_inbound(chat, sender, "1").await.unwrap(),
            Some(message.to_vec()),
            "{chat} {sender}"
        );
    }
    assert_eq!(sales.buffered_inbound("c", "s", "2").await.unwrap(), None);

    // Buffered again (a replay): the new copy, and its time renewed.
    sales
        .buffer_inbound(&[row("c", "s", "1", b"one again")], 300)
        .await
        .unwrap();
    assert_eq!(sales.delete_inbound_buffered_before(200).await.unwrap(), 2);
    assert_eq!(
        sales.delete_inbound_buffered_before(300).await.unwrap(),
        0,
        "a message buffered at the cutoff is not older than it"
    );
    assert_eq!(
        sales.buffered_inbound("c", "s", "1").await.unwrap(),
        Some(b"one again".to_vec())
    );
    sales
        .unbuffer_inbound(&[PendingInboundKey {
            chat: "c",
            sender: "s",
            id: "1",
        }])
        .unwrap();
    assert_eq!(sales.buffered_inbound_count().await, 0);

    sales
        .buffer_inbound(&[row("c", "s", "2", b"x")], 400)
        .await
        .unwrap();
    sales.clear_library_records().await.unwrap();
    assert_eq!(sales.buffered_inbound_count().await, 0);
    assert_eq!(
        other.buffered_inbound("c", "s", "1").await.unwrap(),
        Some(b"other's".to_vec()),
        "another account's are untouched by its sweep and its clear"
    );
}
