//! The IPC server and client over a real Unix socket, with a fake handler.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{DEADLINE, start};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;
use walink::ipc::protocol::{MAX_LINE_BYTES, StatusResult, code};
use walink::ipc::{Client, ClientError, StreamItem};

/// A client speaking raw lines, to send what a well-behaved client would not.
struct Raw {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Raw {
    async fn connect(path: &std::path::Path) -> Raw {
        let (read, write) = UnixStream::connect(path).await.unwrap().into_split();
        Raw {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let line = timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("a reply in time")
            .unwrap()
            .expect("a line, not end of stream");
        serde_json::from_str(&line).unwrap()
    }

    async fn expect_eof(&mut self) {
        let next = timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("end in time");
        assert!(
            matches!(next, Ok(None)),
            "expected end of stream, got {next:?}"
        );
    }
}

#[tokio::test]
async fn request_gets_its_result() {
    let server = start();
    let mut raw = Raw::connect(&server.path).await;
    raw.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"a1\",\"method\":\"echo\",\"params\":{\"x\":[1,2]}}\n")
        .await;
    assert_eq!(
        raw.recv().await,
        json!({"jsonrpc": "2.0", "id": "a1", "result": {"x": [1, 2]}})
    );

    let mut client = Client::connect(&server.path).await.unwrap();
    let status: StatusResult = client
        .call_typed("status", &json!({"account": "sales"}))
        .await
        .unwrap();
    assert_eq!(
        status.accounts,
        vec![common::account(
            "sales",
            walink::ipc::protocol::HealthLevel::Healthy
        )]
    );
}

#[tokio::test]
async fn malformed_input_gets_errors_and_the_connection_keeps_serving() {
    let server = start();
    let mut raw = Raw::connect(&server.path).await;
    let cases: [(&[u8], i64, &str); 7] = [
        (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\n", code::PARSE_ERROR, "not valid JSON"),
        (b"[1,2]\n", code::INVALID_REQUEST, "batch"),
        (b"\"status\"\n", code::INVALID_REQUEST, "a string"),
        (b"{\"jsonrpc\":\"2.0\",\"id\":2}\n", code::INVALID_REQUEST, "missing \"method\""),
        (b"{\"id\":3,\"method\":\"status\"}\n", code::INVALID_REQUEST, "\"2.0\""),
        (b"\xff\xfe\n", code::PARSE_ERROR, "UTF-8"),
        (b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"status\",\"params\":{\"account\":\"nope\"}}\n", code::UNKNOWN_ACCOUNT, "configured accounts: sales"),
    ];
    for (input, expected_code, expected_text) in cases {
        raw.send(input).await;
        let reply = raw.recv().await;
        assert_eq!(reply["error"]["code"], json!(expected_code), "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected_text), "{message}");
    }
    raw.send(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"echo\",\"params\":{}}\n")
        .await;
    assert_eq!(raw.recv().await["result"], json!({}));
}

/// Over the real socket: invalid UTF-8, deep nesting and truncated lines
/// each get one error reply, and the same connection then serves a request.
#[tokio::test]
async fn the_server_answers_each_malformed_line_and_keeps_serving() {
    let server = start();
    let mut raw = Raw::connect(&server.path).await;
    let cases: Vec<(Vec<u8>, i64)> = vec![
        (b"\xff\xfe\xfd".to_vec(), code::PARSE_ERROR),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":\"\xc3\x28\",\"method\":\"echo\"}".to_vec(),
            code::PARSE_ERROR,
        ),
        (b"\xed\xa0\x80".to_vec(), code::PARSE_ERROR),
        ([&b"["[..]; 30_000].concat(), code::PARSE_ERROR),
        (
            br#"{"jsonrpc":"2.0","id":17,"method":"se"#.to_vec(),
            code::PARSE_ERROR,
        ),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":1e999,\"method\":\"echo\"}".to_vec(),
            code::PARSE_ERROR,
        ),
        (b"\0\0\0\0".to_vec(), code::PARSE_ERROR),
        (b"{}".to_vec(), code::INVALID_REQUEST),
    ];
    for (bytes, expected) in cases {
        raw.send(&[bytes, b"\n".to_vec()].concat()).await;
        let reply = raw.recv().await;
        assert_eq!(reply["error"]["code"], json!(expected), "{reply}");
    }
    raw.send(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\",\"params\":{\"ok\":1}}\n")
        .await;
    assert_eq!(raw.recv().await["result"], json!({"ok": 1}));
}

#[tokio::test]
async fn error_ids_follow_the_request() {
    let server = start();
    let mut raw = Raw::connect(&server.path).await;
    raw.send(b"{\"jsonrpc\":\"2.0\",\"id\":7}\n").await;
    assert_eq!(raw.recv().await["id"], json!(7));
    raw.send(b"not json\n").await;
    assert_eq!(raw.recv().await["id"], Value::Null);
}

#[tokio::test]
async fn unknown_method_is_named_in_the_error() {
    let server = start();
    let mut client = Client::connect(&server.path).await.unwrap();
    let err = client.call("frobnicate", json!({})).await.unwrap_err();
    let ClientError::Rpc(err) = err else {
        panic!("{err:?}")
    };
    assert_eq!(err.code, code::METHOD_NOT_FOUND);
    assert!(err.message.contains("\"frobnicate\""), "{}", err.message);
    assert_eq!(
        client.call("echo", json!({"still": "here"})).await.unwrap(),
        json!({"still": "here"})
    );
}

#[tokio::test]
async fn line_over_the_limit_is_refused_and_the_connection_continues() {
    let server = start();
    let mut raw = Raw::connect(&server.path).await;
    let mut huge = br#"{"jsonrpc":"2.0","id":1,"method":"echo","params":{"x":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES));
    huge.extend_from_slice(b"\"}}\n");
    raw.send(&huge).await;
    let reply = raw.recv().await;
    assert_eq!(reply["error"]["code"], json!(code::INVALID_REQUEST));
    assert_eq!(reply["id"], Value::Null);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("65536 bytes"),
        "{reply}"
    );

    // A line exactly at the limit is fine.
    let mut exact = br#"{"jsonrpc":"2.0","id":2,"method":"echo","params":{"x":""#.to_vec();
    let tail = b"\"}}";
    let filler = MAX_LINE_BYTES - exact.len() - tail.len();
    exact.extend(std::iter::repeat_n(b'b', filler));
    exact.extend_from_slice(tail);
    assert_eq!(exact.len(), MAX_LINE_BYTES);
    exact.push(b'\n');
    raw.send(&exact).await;
    let reply = raw.recv().await;
    assert_eq!(reply["id"], json!(2));
    assert_eq!(reply["result"]["x"].as_str().unwrap().len(), filler);
}

#[tokio::test]
async fn other_clients_are_served_while_one_misbehaves() {
    let server = start();
    let mut bad = Raw::connect(&server.path).await;
    bad.send(b"{{{{\n").await;
    let mut good = Client::connect(&server.path).await.unwrap();
    // The bad client holds a half-written line open.
    bad.send(b"{\"jsonrpc\":").await;
    assert_eq!(good.call("echo", json!([1])).await.unwrap(), json!([1]));
    assert_eq!(bad.recv().await["error"]["code"], json!(code::PARSE_ERROR));
}

#[tokio::test]
async fn notifications_get_no_reply_and_requests_are_answered_in_order() {
    let server = start();
    let mut raw = Raw::connect(&server.path).await;
    raw.send(
        b"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"n\":0}}\n\
          {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"qr\",\"params\":{\"account\":\"sales\"}}\n\
          {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\",\"params\":{\"n\":2}}\n",
    )
    .await;
    assert_eq!(raw.recv().await["method"], json!("qr"));
    assert_eq!(raw.recv().await["method"], json!("qr"));
    assert_eq!(raw.recv().await["id"], json!(1));
    assert_eq!(
        raw.recv().await,
        json!({"jsonrpc": "2.0", "id": 2, "result": {"n": 2}})
    );
}

#[tokio::test]
async fn streaming_call_yields_notifications_then_result() {
    let server = start();
    let mut client = Client::connect(&server.path).await.unwrap();
    let mut stream = client
        .stream("qr", json!({"account": "sales"}))
        .await
        .unwrap();
    let mut codes = Vec::new();
    let result = loop {
        match stream.next().await.unwrap().expect("stream not over yet") {
            StreamItem::Notification(n) => {
                assert_eq!(n.method, "qr");
                assert_eq!(n.params["account"], json!("sales"));
                assert_eq!(n.params["timeout_secs"], json!(20));
                codes.push(n.params["code"].as_str().unwrap().to_owned());
            }
            StreamItem::Result(value) => break value,
        }
    };
    assert_eq!(codes, ["2@first,AAAA,BBBB,CCCC", "2@second,DDDD,EEEE,FFFF"]);
    assert_eq!(result, json!({"jid": "15551234567:4@s.whatsapp.net"}));
    assert!(stream.next().await.unwrap().is_none());
    // The connection is usable again afterwards.
    assert_eq!(client.call("echo", json!(1)).await.unwrap(), json!(1));
}

#[tokio::test]
async fn client_hang_up_cancels_the_stream() {
    let mut server = start();
    let mut client = Client::connect(&server.path).await.unwrap();
    let mut stream = client.stream("subscribe", json!({})).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let StreamItem::Notification(first) = first else {
        panic!("{first:?}")
    };
    assert_eq!(first.method, "event");
    assert_eq!(first.params["kind"], json!("state_changed"));
    assert!(server.dropped.try_recv().is_err(), "still streaming");
    drop(client);
    let signal = timeout(DEADLINE, server.dropped.recv())
        .await
        .expect("handler dropped in time");
    assert_eq!(signal, Some("dropped"));
}

#[tokio::test]
async fn half_closed_client_still_gets_its_answers() {
    let server = start();
    let mut raw = Raw::connect(&server.path).await;
    raw.send(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"qr\",\"params\":{\"account\":\"sales\"}}\n\
          {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\",\"params\":\"last\"}",
    )
    .await;
    raw.write.shutdown().await.unwrap();
    assert_eq!(raw.recv().await["method"], json!("qr"));
    assert_eq!(raw.recv().await["method"], json!("qr"));
    assert_eq!(
        raw.recv().await["result"]["jid"],
        json!("15551234567:4@s.whatsapp.net")
    );
    assert_eq!(raw.recv().await["result"], json!("last"));
    raw.expect_eof().await;
}

#[tokio::test]
async fn slow_reader_is_told_how_many_notifications_it_missed() {
    let server = start();
    let mut raw = Raw::connect(&server.path).await;
    let total = 5000u64;
    raw.send(format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"flood\",\"params\":{{\"count\":{total},\"lost\":7}}}}\n").as_bytes())
        .await;
    let mut ticks = Vec::new();
    let mut missed = 0;
    loop {
        let message = raw.recv().await;
        match message["method"].as_str() {
            Some("tick") => {
                assert_eq!(missed, 0, "lagged comes after what was delivered");
                ticks.push(message["params"]["i"].as_u64().unwrap());
            }
            Some("lagged") => missed += message["params"]["missed"].as_u64().unwrap(),
            _ => {
                assert_eq!(message["result"]["sent"], json!(total));
                break;
            }
        }
    }
    assert!(missed > 0, "the flood overflowed the sink");
    assert_eq!(
        ticks.len() as u64 + missed,
        total + 7,
        "dropped here plus lost upstream"
    );
    assert_eq!(
        ticks,
        (0..ticks.len() as u64).collect::<Vec<_>>(),
        "oldest kept, in order"
    );
}

#[tokio::test]
async fn shutdown_answers_running_requests_and_stops_serving() {
    let mut server = start();
    let mut raw = Raw::connect(&server.path).await;
    raw.send(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"subscribe\"}\n")
        .await;
    assert_eq!(raw.recv().await["method"], json!("event"));
    assert_eq!(raw.recv().await["method"], json!("event"));
    server.shutdown.cancel();
    let reply = raw.recv().await;
    assert_eq!(reply["id"], json!(5));
    assert_eq!(reply["error"]["code"], json!(code::SHUTTING_DOWN));
    raw.expect_eof().await;
    assert_eq!(
        timeout(DEADLINE, server.dropped.recv()).await.unwrap(),
        Some("dropped")
    );
    timeout(DEADLINE, server.task)
        .await
        .expect("serve returns")
        .unwrap();
}

#[tokio::test]
async fn socket_is_0660_and_stale_sockets_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("walink.sock");
    let listener = walink::ipc::bind(&path, Some("walink-no-such-group")).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "mode {mode:o}");

    // Still listening: a second daemon must not steal the socket.
    let err = walink::ipc::bind(&path, None).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains("already listening"), "{err}");

    // A crashed daemon leaves the file behind: replaced.
    drop(listener);
    assert!(path.exists());
    let listener = walink::ipc::bind(&path, None).unwrap();
    drop(listener);

    // Not a socket: left alone.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"keep me").unwrap();
    let err = walink::ipc::bind(&file, None).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[tokio::test]
async fn socket_gets_the_configured_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("walink.sock");
    // Our own primary group always exists and chown to it is always allowed.
    let gid = std::fs::metadata(dir.path())
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
        .unwrap();
    let group = group_name(gid);
    let _listener = walink::ipc::bind(&path, Some(&group)).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&path).unwrap()),
        gid
    );
}

fn group_name(gid: u32) -> String {
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    groups
        .lines()
        .find_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next()?;
            let id: u32 = fields.nth(1)?.parse().ok()?;
            (id == gid).then(|| name.to_owned())
        })
        .expect("our group is in /etc/group")
}

#[tokio::test]
async fn listener_passed_as_a_descriptor_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activated.sock");
    let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let listener = walink::ipc::server::listener_from_fd(std_listener.into()).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(walink::ipc::serve(
        listener,
        std::sync::Arc::new(common::Fake { dropped: tx }),
        shutdown.clone(),
    ));
    let mut client = Client::connect(&path).await.unwrap();
    assert_eq!(client.call("echo", json!("hi")).await.unwrap(), json!("hi"));
    shutdown.cancel();

    let file = std::fs::File::create(dir.path().join("not-a-socket")).unwrap();
    let err = walink::ipc::server::listener_from_fd(file.into()).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
}

#[tokio::test]
async fn client_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    let err = Client::connect(&missing).await.err().unwrap();
    assert!(matches!(err, ClientError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("is walinkd running?"), "{err}");

    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let err = Client::connect(&stale).await.err().unwrap();
    assert!(matches!(err, ClientError::Refused { .. }), "{err:?}");
}
