//! Edits and deletions for everyone going out, end to end: one walink
//! account writes to another through mock-wa, then edits and deletes what
//! it wrote with the real CLI; the other account's history shows each, as
//! does the sender's own (and `keep_revoked_text` keeps a deleted text).

mod harness;

use std::time::Duration;

use harness::{Env, eventually};
use serde_json::Value;

const CONNECT: Duration = Duration::from_secs(40);

/// Message `id` in `account`'s history, once `done` holds for it.
async fn message_when(
    env: &Env,
    account: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(CONNECT, what, || async {
        let page = env.walink_json(&["messages", account]).await;
        page["messages"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == id && done(m))
            .cloned()
    })
    .await
}

fn stdout_id(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_and_a_deletion_reach_the_other_side_and_the_own_history() {
    // support keeps the text of what is deleted for everyone; sales does not.
    let mut env = Env::new(&["sales", "support"]).await;
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    let config = config.replace(
        "name = \"support\"\n",
        "name = \"support\"\nkeep_revoked_text = true\n",
    );
    std::fs::write(env.config_path(), config).unwrap();
    env.start_daemon().await;
    for account in ["sales", "support"] {
        env.pair(account).await;
        env.wait_state(account, "connected", CONNECT).await;
    }
    let support = format!("+{}", env.phone("support").await);
    let id = stdout_id(
        &env.walink(&["send", "sales", &support, "the meeting is at 3"])
            .await,
    );
    message_when(&env, "support", &id, "support receives it", |m| {
        m["text"] == "the meeting is at 3"
    })
    .await;

    let edit = stdout_id(
        &env.walink(&["edit", "sales", &id, "the meeting is at 4"])
            .await,
    );
    assert_ne!(edit, id, "an edit goes out under an id of its own");
    let theirs = message_when(&env, "support", &id, "support sees the edit", |m| {
        m["edited"] == true
    })
    .await;
    assert_eq!(theirs["text"], "the meeting is at 4", "{theirs}");
    let mine = message_when(&env, "sales", &id, "sales shows its edit", |m| {
        m["edited"] == true
    })
    .await;
    assert_eq!(mine["text"], "the meeting is at 4");
    let outbox = env.walink_json(&["outbox", "sales", "--all"]).await;
    let acked = outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == edit.as_str())
        .cloned()
        .expect("the edit is in the outbox");
    assert_ne!(acked["status"], "queued", "{acked}");

    stdout_id(&env.walink(&["delete", "sales", &id]).await);
    let theirs = message_when(&env, "support", &id, "support sees the deletion", |m| {
        m["revoked"] == true
    })
    .await;
    assert_eq!(
        theirs["text"], "the meeting is at 4",
        "keep_revoked_text: {theirs}"
    );
    let mine = message_when(&env, "sales", &id, "sales shows its deletion", |m| {
        m["revoked"] == true
    })
    .await;
    assert_eq!(
        mine["text"],
        Value::Null,
        "by default the text goes: {mine}"
    );
    let page = env.walink_json(&["messages", "support"]).await;
    assert_eq!(
        page["messages"].as_array().unwrap().len(),
        1,
        "an edit and a deletion are no messages of their own: {page}"
    );

    // Only a message this account sent, and still there, can change.
    let gone = env.walink(&["edit", "sales", &id, "again"]).await;
    assert_eq!(gone.status.code(), Some(3));
    let why = String::from_utf8_lossy(&gone.stderr).into_owned();
    assert!(why.contains("deleted for everyone"), "{why}");
    let not_mine = env.walink(&["delete", "support", &id]).await;
    assert_eq!(not_mine.status.code(), Some(3));
    let why = String::from_utf8_lossy(&not_mine.stderr).into_owned();
    assert!(why.contains("sent no message"), "{why}");
}
