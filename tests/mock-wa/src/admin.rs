//! Admin HTTP API: a tiny HTTP/1.1 server (one request per connection,
//! JSON bodies). Routes the core knows are handled here; everything else
//! goes to [`StanzaHandlers::admin`] so the Signal side can add its own.

use crate::handlers::{AdminRequest, AdminResponse, StanzaHandlers};
use crate::http1;
use crate::pairing;
use crate::state::{Fault, State};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

// Room for `POST /admin/deliver` with base64 media.
const MAX_BODY: usize = 16 * 1024 * 1024;
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
    let resp =
        match tokio::time::timeout(READ_TIMEOUT, http1::read_request(&mut tcp, MAX_BODY)).await {
            Ok(Ok(req)) => {
                debug!(method = %req.method, path = %req.path, "admin request");
                let req = AdminRequest {
                    method: req.method,
                    path: req.path,
                    query: req.query,
                    body: req.body,
                };
                route(&state, &handlers, &req).await
            }
            Ok(Err(msg)) => error(400, &msg),
            Err(_) => error(408, "request not received within 10 s"),
        };
    let body = resp.body.to_string();
    http1::respond(&mut tcp, resp.status, "application/json", body.as_bytes()).await;
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
