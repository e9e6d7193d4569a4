use std::collections::HashSet;
use std::time::Duration;

use std::sync::Arc;

use super::*;
use crate::store::StateDb;

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

/// sled frees its file lock from a background thread shortly after the last
/// handle is dropped, so a reopen polls until it is free.
fn open(dir: &tempfile::TempDir) -> Arc<MessageStore> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match StateDb::open(dir.path()) {
            Ok(db) => return db.messages("sales").unwrap(),
            Err(StoreError::Open { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => panic!("open the state database: {err}"),
        }
    }
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
            .unwrap()
            .unwrap();
        store
            .advance("ID1", DeliveryStatus::ServerAck, None, 12)
            .unwrap()
            .unwrap();
    }
    let store = open(&dir);
    let pending: Vec<String> = store.pending().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(pending, ["ID0", "ID2", "ID3", "ID4"]);
    let acked = store.outgoing("ID1").unwrap().unwrap();
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
    assert_eq!(store.pending().unwrap().len(), 1);
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
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .advance("A", DeliveryStatus::ServerAck, None, 3)
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .advance("A", DeliveryStatus::Failed, Some("late".into()), 3)
            .unwrap()
            .is_none(),
        "a delivered message cannot fail"
    );
    assert_eq!(
        store.outgoing("A").unwrap().unwrap().status,
        DeliveryStatus::Delivered
    );
    assert!(store.pending().unwrap().is_empty());

    store
        .enqueue("B", "1@s.whatsapp.net", "x", None, 1)
        .await
        .unwrap();
    let r = store
        .retry_later("B", "server busy".into(), 4)
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.status, r.attempts, r.last_error.as_deref()),
        (DeliveryStatus::Queued, 1, Some("server busy"))
    );
    let failed = store
        .advance("B", DeliveryStatus::Failed, Some("refused".into()), 5)
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
    assert_eq!(store.failed().unwrap()[0].id, "B");
    assert!(
        store
            .advance("nope", DeliveryStatus::Read, None, 6)
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
    let page = store.messages(None, None, 10).unwrap();
    assert_eq!(page.messages.len(), 3);
    assert_eq!(page.next_cursor, None);
    let chats = store.chats().unwrap();
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
        let page = store.messages(None, cursor, 50).unwrap();
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
        let page = store.messages(Some("x@s"), cursor, 50).unwrap();
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
        .unwrap();
    assert_eq!(pruned.inbox, 6);
    let ids: Vec<String> = store
        .messages(None, None, 100)
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.message.id)
        .collect();
    assert_eq!(ids, ["m9", "m8", "m7", "m6"]);
    assert_eq!(store.chats().unwrap()[0].count, 4);
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
        .unwrap();
    assert_eq!(pruned.inbox, 2, "m6 and m7 arrived before 7.5 s");
    assert_eq!(store.messages(None, None, 100).unwrap().messages.len(), 3);

    for i in 0..4 {
        store
            .enqueue(&format!("o{i}"), "1@s.whatsapp.net", "x", None, i)
            .await
            .unwrap();
    }
    store
        .advance("o1", DeliveryStatus::ServerAck, None, 5)
        .unwrap();
    store.advance("o2", DeliveryStatus::Read, None, 5).unwrap();
    let pruned = store
        .prune(
            Retention {
                max_age: None,
                max_messages: Some(1),
            },
            10,
        )
        .unwrap();
    assert_eq!(pruned.outbox, 2, "only the finished ones");
    let left: Vec<String> = store
        .recent_outgoing(10)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, ["o3", "o0"]);
    assert!(store.outgoing("o1").unwrap().is_none());
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
    let pending = store.pending().unwrap();
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

/// What a kill -9 between the separate writes of an enqueue or a status
/// change can leave behind, written by hand, then repaired by reopening.
#[tokio::test]
async fn a_crash_between_outbox_writes_is_repaired_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        for id in ["A", "B", "C"] {
            store
                .enqueue(id, "1@s.whatsapp.net", "x", None, 1)
                .await
                .unwrap();
        }
        // Enqueues that died after their id (and pending) entry.
        store
            .tree(Tree::OutboxIds)
            .insert("D", &seq_key(4))
            .unwrap();
        store
            .tree(Tree::OutboxPending)
            .insert(seq_key(4), &[])
            .unwrap();
        store
            .tree(Tree::OutboxIds)
            .insert("E", &seq_key(5))
            .unwrap();
        // Status changes that died after the record, before the indexes.
        for (seq, status) in [(2, DeliveryStatus::Failed), (3, DeliveryStatus::ServerAck)] {
            let mut record = store.outgoing_at(seq).unwrap().unwrap();
            record.status = status;
            let value = store.encode(Tree::Outbox, &record).unwrap();
            store
                .tree(Tree::Outbox)
                .insert(seq_key(seq), value)
                .unwrap();
        }
        store.flush().await.unwrap();
    }
    let store = open(&dir);
    let ids = |records: Vec<OutboxRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(store.pending().unwrap()), ["A"]);
    assert_eq!(ids(store.failed().unwrap()), ["B"]);
    assert_eq!(
        store.counts(),
        OutboxCounts {
            queued: 1,
            failed: 1
        }
    );
    assert_eq!(store.outgoing("D").unwrap(), None, "D was never stored");
    let d = store
        .enqueue("D", "1@s.whatsapp.net", "again", None, 2)
        .await
        .unwrap();
    assert!(d.created, "a retried D is queued, once");
    let f = store
        .enqueue("F", "1@s.whatsapp.net", "x", None, 2)
        .await
        .unwrap();
    assert_eq!((d.record.seq, f.record.seq), (4, 5), "sequences are reused");
    assert_eq!(
        store.outgoing("E").unwrap(),
        None,
        "E's stale id entry does not name F"
    );
    assert_eq!(
        store
            .advance("E", DeliveryStatus::ServerAck, None, 3)
            .unwrap(),
        None,
        "nor does a status for E change F"
    );
    assert_eq!(ids(store.pending().unwrap()), ["A", "D", "F"]);
}
