//! Admin HTTP API: a tiny HTTP/1.1 server (one request per connection,
//! JSON bodies). Routes the core knows are handled here; everything else
//! goes to [`StanzaHandlers::admin`] so the Signal side can add its own.

use crate::handlers::{AdminRequest, AdminResponse, StanzaHandlers};
use crate::pairing;
use crate::state::{Fault, State};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves admin requests on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, state: State, handlers: Arc<dyn StanzaHandlers>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let state = state.clone();
                let handlers = handlers.clone();
                tokio::spawn(async move { handle_conn(tcp, state, handlers).await });
            }
            Err(e) => warn!("admin accept failed: {e}"),
        }
    }
}

async fn handle_conn(mut tcp: TcpStream, state: State, handlers: Arc<dyn StanzaHandlers>) {
    let resp = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut tcp)).await {
        Ok(Ok(req)) => {
            debug!(method = %req.method, path = %req.path, "admin request");
            route(&state, &handlers, &req).await
        }
        Ok(Err(msg)) => error(400, &msg),
        Err(_) => error(408, "request not received within 10 s"),
    };
    let body = resp.body.to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let _ = tcp.write_all(body.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

fn error(status: u16, msg: &str) -> AdminResponse {
    AdminResponse {
        status,
        body: json!({ "error": msg }),
    }
}

fn ok(body: serde_json::Value) -> AdminResponse {
    AdminResponse { status: 200, body }
}

async fn read_request(tcp: &mut TcpStream) -> Result<AdminRequest, String> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too large".into());
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the request head ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "request head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse().map_err(|_| "bad Content-Length")?;
        }
    }
    if content_length > MAX_BODY {
        return Err("body larger than 1 MiB".into());
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < content_length {
        let mut chunk = vec![0u8; content_length - body.len()];
        let n = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the body ended".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(content_length);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Ok(AdminRequest {
        method,
        path: path.to_owned(),
        query: parse_query(query),
        body,
    })
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| char::from(c).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
struct FaultBody {
    target: String,
    kind: String,
    code: Option<u16>,
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
struct PairCodeBody {
    code: String,
    phone: String,
}

#[derive(Deserialize)]
struct RefuseBody {
    seconds: u64,
}

async fn route(
    state: &State,
    handlers: &Arc<dyn StanzaHandlers>,
    req: &AdminRequest,
) -> AdminResponse {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/admin/scan") => {
            let qr = String::from_utf8_lossy(&req.body);
            match pairing::scan(state, &qr, req.query_param("phone")).await {
                Ok(jid) => ok(json!({ "jid": jid })),
                Err(e @ pairing::PairError::Timeout(_)) => error(504, &e.to_string()),
                Err(e @ (pairing::PairError::BadQr(_) | pairing::PairError::KeyMismatch)) => {
                    error(400, &e.to_string())
                }
                Err(e) => error(409, &e.to_string()),
            }
        }
        ("POST", "/admin/pair-code") => match serde_json::from_slice::<PairCodeBody>(&req.body) {
            Err(e) => error(400, &format!("body must be {{code, phone}}: {e}")),
            Ok(b) => match crate::pair_code::enter_code(state, &b.phone, &b.code).await {
                Ok(jid) => ok(json!({ "jid": jid })),
                Err(e @ pairing::PairError::Timeout(_)) => error(504, &e.to_string()),
                Err(e @ pairing::PairError::BadCode(_)) => error(400, &e.to_string()),
                Err(e) => error(409, &e.to_string()),
            },
        },
        ("GET", "/admin/devices") => ok(json!(state.device_infos())),
        ("GET", "/admin/stats") => ok(json!(state.stats.snapshot())),
        ("POST", "/admin/fault") => match serde_json::from_slice::<FaultBody>(&req.body) {
            Err(e) => error(
                400,
                &format!("body must be {{target, kind, code?, delay_ms?}}: {e}"),
            ),
            Ok(b) => match Fault::parse(&b.kind, b.code, b.delay_ms) {
                Err(msg) => error(400, &msg),
                Ok(fault) => ok(json!({ "affected": state.inject_fault(&b.target, fault) })),
            },
        },
        ("POST", "/admin/refuse") => match serde_json::from_slice::<RefuseBody>(&req.body) {
            Err(e) => error(400, &format!("body must be {{seconds}}: {e}")),
            Ok(b) => {
                state.refuse_for(b.seconds);
                ok(json!({ "refusing_for": b.seconds }))
            }
        },
        _ => match handlers.admin(state, req).await {
            Some(resp) => resp,
            None => error(404, &format!("no admin route {} {}", req.method, req.path)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            parse_query("contact=%2B1555&x=a+b&flag"),
            vec![
                ("contact".into(), "+1555".into()),
                ("x".into(), "a b".into()),
                ("flag".into(), String::new())
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
    }
}
