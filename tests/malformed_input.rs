//! A fixed corpus of malformed input for the two parsers that take input
//! from outside: the IPC request decoder (envelope and every method's
//! params) and the config parser. Each must answer with a clean error and
//! never panic. The fuzz targets (`make fuzz`) explore the same entry points
//! at random; this is the cheap deterministic half that runs in every
//! `make test`, and where fuzz findings become regression cases. The same
//! lines over a real socket are in tests/ipc.rs.

use std::path::Path;

use serde_json::{Value, json};
use walink::config::{Config, ConfigError, Mode};
use walink::ipc::protocol::{code, method};
use walink::ipc::{Call, decode_request};

const VALID_SEND: &str = r#"{"jsonrpc":"2.0","id":17,"method":"send","params":{"account":"sales","to":"+15551234567","text":"hello","id":"k-1","wait":false}}"#;

fn nested(open: &str, close: &str, depth: usize) -> String {
    format!("{}{}", open.repeat(depth), close.repeat(depth))
}

/// Runs one line through what the server does with it: the envelope, then
/// the method's params. `Ok` only when both accept it.
fn decode(line: &str) -> Result<Call, (i64, String)> {
    let request = decode_request(line).map_err(|(_, e)| (e.code, e.message))?;
    Call::parse(&request.method, request.params).map_err(|e| (e.code, e.message))
}

fn assert_refused(line: &str, codes: &[i64]) {
    match decode(line) {
        Ok(call) => panic!("accepted malformed input {line:.200}: {call:?}"),
        Err((code, message)) => {
            assert!(
                codes.contains(&code),
                "{line:.200}: code {code} not in {codes:?}: {message}"
            );
            assert!(!message.is_empty(), "{line:.200}: empty error message");
        }
    }
}

#[test]
fn every_truncation_of_a_request_is_a_clean_error() {
    assert!(
        decode(VALID_SEND).is_ok(),
        "the untruncated request is valid"
    );
    for (end, _) in VALID_SEND.char_indices().skip(1) {
        assert_refused(&VALID_SEND[..end], &[code::PARSE_ERROR]);
    }
}

#[test]
fn malformed_envelopes_are_refused() {
    let deep_array = nested("[", "]", 100_000);
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(20_000), "}".repeat(20_000));
    let deep_params = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"status","params":{}}}"#,
        nested("[", "]", 10_000)
    );
    let cases: Vec<(String, i64)> = vec![
        (deep_array, code::PARSE_ERROR),
        (deep_object, code::PARSE_ERROR),
        (deep_params, code::PARSE_ERROR),
        (
            r#"{"jsonrpc":"2.0","id":1e999,"method":"status"}"#.into(),
            code::PARSE_ERROR,
        ),
        (
            r#"{"jsonrpc":"2.0","id":-1e400,"method":"status"}"#.into(),
            code::PARSE_ERROR,
        ),
        (
            r#"{"jsonrpc":"2.0","id":"\ud800","method":"status"}"#.into(),
            code::PARSE_ERROR,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"status"} trailing"#.into(),
            code::PARSE_ERROR,
        ),
        (
            "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}".into(),
            code::PARSE_ERROR,
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sta\0tus\"}".into(),
            code::PARSE_ERROR,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"status","#.into(),
            code::PARSE_ERROR,
        ),
        ("".into(), code::PARSE_ERROR),
        ("null".into(), code::INVALID_REQUEST),
        ("true".into(), code::INVALID_REQUEST),
        ("18446744073709551616".into(), code::INVALID_REQUEST),
        ("[]".into(), code::INVALID_REQUEST),
        (
            r#"{"jsonrpc":2.0,"id":1,"method":"status"}"#.into(),
            code::INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"status"}"#.into(),
            code::INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"status"}"#.into(),
            code::INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"status"}"#.into(),
            code::INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":42}"#.into(),
            code::INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":null}"#.into(),
            code::INVALID_REQUEST,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"no_such"}"#.into(),
            code::METHOD_NOT_FOUND,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":""}"#.into(),
            code::METHOD_NOT_FOUND,
        ),
    ];
    for (line, expected) in &cases {
        assert_refused(line, &[*expected]);
    }
}

#[test]
fn params_of_the_wrong_shape_are_refused_for_every_method() {
    let wrong_shapes = [
        json!([]),
        json!("account"),
        json!(42),
        json!(true),
        json!({"account": 5}),
        json!({"account": ["sales"]}),
        json!({"account": {"name": "sales"}}),
        json!({"account": "sales", "unknown_key": 1}),
    ];
    for name in method::ALL {
        for params in &wrong_shapes {
            let line = json!({"jsonrpc": "2.0", "id": 1, "method": name, "params": params});
            assert_refused(&line.to_string(), &[code::INVALID_PARAMS]);
        }
    }
}

#[test]
fn out_of_range_and_mistyped_fields_are_refused() {
    let cases: Vec<(&str, Value)> = vec![
        ("send", json!({"account": "sales"})),
        (
            "send",
            json!({"account": "sales", "to": 15551234567u64, "text": "x"}),
        ),
        (
            "send",
            json!({"account": "sales", "to": "+15551234567", "text": ["x"]}),
        ),
        (
            "send",
            json!({"account": "sales", "to": "+15551234567", "text": "x", "wait": "yes"}),
        ),
        (
            "send",
            json!({"account": "sales", "to": "+15551234567", "text": "x", "id": 7}),
        ),
        (
            "send",
            json!({"account": "sales", "to": "+15551234567", "text": "x", "id": ""}),
        ),
        (
            "send",
            json!({"account": "sales", "to": "+15551234567", "text": "x", "id": "a b"}),
        ),
        (
            "send",
            json!({"account": "sales", "to": "+15551234567", "text": "x", "id": "k".repeat(129)}),
        ),
        (
            "send",
            json!({"account": "sales", "to": "+15551234567", "text": "   "}),
        ),
        (
            "send",
            json!({"account": "sales", "to": "+15551234567", "text": "x".repeat(61 * 1024)}),
        ),
        ("send", json!({"account": "sales", "to": "", "text": "x"})),
        ("send", json!({"account": "sales", "to": "+1", "text": "x"})),
        (
            "send",
            json!({"account": "sales", "to": "+9".repeat(40), "text": "x"}),
        ),
        (
            "send",
            json!({"account": "sales", "to": "x@y@z", "text": "x"}),
        ),
        ("messages", json!({"account": "sales", "limit": 0})),
        ("messages", json!({"account": "sales", "limit": -1})),
        ("messages", json!({"account": "sales", "limit": 1.5})),
        ("messages", json!({"account": "sales", "limit": 1e300})),
        ("messages", json!({"account": "sales", "limit": u64::MAX})),
        (
            "messages",
            json!({"account": "sales", "before": "yesterday"}),
        ),
        ("messages", json!({"account": "sales", "before": -5})),
        (
            "messages",
            json!({"account": "sales", "chat": "not a phone"}),
        ),
        ("outbox", json!({"account": "sales", "all": "yes"})),
        ("pair_code", json!({"account": "sales", "phone": "call me"})),
        (
            "pair_code",
            json!({"account": "sales", "phone": 15551234567u64}),
        ),
        ("pair_code", json!({"account": "sales"})),
    ];
    let codes = [
        code::INVALID_PARAMS,
        code::INVALID_RECIPIENT,
        code::INVALID_MESSAGE,
    ];
    for (name, params) in cases {
        let line = json!({"jsonrpc": "2.0", "id": 1, "method": name, "params": params});
        assert_refused(&line.to_string(), &codes);
    }
    // A number too big for u64 has to be written by hand: json! cannot hold it.
    assert_refused(
        r#"{"jsonrpc":"2.0","id":1,"method":"messages","params":{"account":"sales","limit":18446744073709551616}}"#,
        &codes,
    );
}

const FULL_CONFIG: &str = r#"[daemon]
socket = "/run/walink/walink.sock"
state_dir = "/var/lib/walink"
socket_group = "walink"
log_target = "journald"

[connection]
url = "wss://web.whatsapp.com/ws/chat"
connect_timeout_secs = 20
backoff_secs = [1, 2, 5, 15, 60]
jitter = 0.2
client_version = "2.3000.1023456789"

[[account]]
name = "sales"
enabled = true
pair_on_start = false
retention_days = 30
retention_max_messages = 10000

[[account]]
name = "support"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/walink/walink.toml"), Mode::System)
}

fn assert_config_refused(text: &str) {
    match parse(text) {
        Ok(config) => panic!("accepted malformed config {text:.200}: {config:?}"),
        Err(e) => assert!(!e.to_string().is_empty(), "{text:.200}: empty error"),
    }
}

#[test]
fn every_truncation_of_a_config_parses_or_fails_cleanly() {
    parse(FULL_CONFIG).expect("the untruncated config is valid");
    let mut refused = 0;
    for (end, _) in FULL_CONFIG.char_indices() {
        if let Err(e) = parse(&FULL_CONFIG[..end]) {
            let line = e.line().expect("a syntax error names its line");
            assert!(
                line <= FULL_CONFIG[..end].lines().count() + 1,
                "line {line} is past the end of the text: {e}"
            );
            refused += 1;
        }
    }
    assert!(refused > 100, "most truncations are invalid: {refused}");
}

#[test]
fn malformed_configs_are_refused() {
    let cases = [
        format!("a = {}", nested("[", "]", 100_000)),
        format!("a = {}1{}", "{b = ".repeat(10_000), "}".repeat(10_000)),
        format!("[{}]", "a.".repeat(10_000) + "a"),
        "[connection]\nconnect_timeout_secs = 99999999999999999999999999".into(),
        "[connection]\nconnect_timeout_secs = -1".into(),
        "[connection]\nconnect_timeout_secs = 1e999".into(),
        "[connection]\njitter = nan".into(),
        "[connection]\njitter = inf".into(),
        "[connection]\njitter = \"0.2\"".into(),
        "[connection]\nbackoff_secs = 5".into(),
        "[connection]\nbackoff_secs = []".into(),
        "[connection]\nbackoff_secs = [18446744073709551615]".into(),
        "[connection]\nbackoff_secs = [1, \"2\"]".into(),
        "[connection]\nclient_version = \"2.x.1\"".into(),
        "[connection]\nurl = 42".into(),
        "[daemon]\nsocket = [\"/run/x\"]".into(),
        "[daemon]\nsocket = \"relative\"".into(),
        "[daemon]\nsocket = \"/run/a\0b\"".into(),
        "daemon = 1".into(),
        "[daemon]\n[daemon]".into(),
        "[[account]]\nname = \"\"".into(),
        "[[account]]\nname = \"a\\u0000b\"".into(),
        "[[account]]\nname = \"é\"".into(),
        "[[account]]\nname = 5".into(),
        "[[account]]\nname = \"x\"\nretention_days = -3".into(),
        "account = \"sales\"".into(),
        "\u{feff}\u{feff}[daemon]".into(),
        "[daemon\nsocket = \"/x\"".into(),
        "[daemon]\nsocket = \"/x".into(),
        "[daemon]\nsocket = '''/x".into(),
        "\r\r\r[daemon]\r\nsocket=".into(),
        "=".into(),
        "\"\\".into(),
    ];
    for text in &cases {
        assert_config_refused(text);
    }
}

#[test]
fn a_config_file_that_is_not_utf8_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("walink.toml");
    std::fs::write(&path, b"[daemon]\nsocket = \"/run/\xff\xfe\"\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("walink.toml"), "{err}");
}
