//! The media host's HTTP side: `POST /mms/TYPE/TOKEN?auth=…&token=…`
//! uploads (answered `{"url","direct_path"}` as the real endpoint does) and
//! `GET DIRECT_PATH` downloads.

use serde_json::json;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::http1::{self, Request};
use crate::state::State;

/// Big enough for any test file; the real limit is far higher.
const MAX_UPLOAD: usize = 64 * 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the media host on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, state: State) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let state = state.clone();
                tokio::spawn(async move { handle_conn(tcp, state).await });
            }
            Err(e) => {
                warn!("media accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle_conn(mut tcp: TcpStream, state: State) {
    let req = match tokio::time::timeout(READ_TIMEOUT, http1::read_request(&mut tcp, MAX_UPLOAD))
        .await
    {
        Ok(Ok(req)) => req,
        Ok(Err(msg)) => return json_reply(&mut tcp, &state, 400, &json!({ "error": msg })).await,
        Err(_) => {
            let body = json!({ "error": "request not received within 30 s" });
            return json_reply(&mut tcp, &state, 408, &body).await;
        }
    };
    debug!(method = %req.method, path = %req.path, "media request");
    match req.method.as_str() {
        "POST" if req.path.starts_with("/mms/") => upload(&mut tcp, &state, req).await,
        "GET" => download(&mut tcp, &state, &req).await,
        _ => {
            let body = json!({ "error": format!("no media route {} {}", req.method, req.path) });
            json_reply(&mut tcp, &state, 405, &body).await;
        }
    }
}

async fn json_reply(tcp: &mut TcpStream, state: &State, status: u16, body: &serde_json::Value) {
    if status >= 400 {
        state.stats.bump(&state.stats.media_refused);
    }
    http1::respond(tcp, status, "application/json", body.to_string().as_bytes()).await;
}

async fn upload(tcp: &mut TcpStream, state: &State, req: Request) {
    let q = |k: &str| {
        req.query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let mut parts = req.path.trim_start_matches("/mms/").splitn(2, '/');
    let (Some(mms_type), Some(path_token)) = (parts.next(), parts.next()) else {
        let body = json!({ "error": "upload path must be /mms/TYPE/TOKEN" });
        return json_reply(tcp, state, 400, &body).await;
    };
    if q("resume").as_deref() == Some("1") {
        // The large-file check before an upload: say whether it is complete.
        return match state.media.by_enc_token(path_token) {
            Some(blob) => {
                let stored = state.media.stored_of(&blob);
                let body = json!({ "resume": "complete", "url": stored.url, "direct_path": stored.direct_path });
                json_reply(tcp, state, 200, &body).await
            }
            None => json_reply(tcp, state, 404, &json!({ "error": "no such upload" })).await,
        };
    }
    match state.media.upload(
        mms_type,
        path_token,
        q("auth").as_deref(),
        q("token").as_deref(),
        req.body,
    ) {
        Ok(stored) => {
            state.stats.bump(&state.stats.media_uploads);
            let body = json!({ "url": stored.url, "direct_path": stored.direct_path });
            json_reply(tcp, state, 200, &body).await;
        }
        Err(e) => {
            let body = json!({ "error": e.to_string() });
            json_reply(tcp, state, e.status(), &body).await;
        }
    }
}

async fn download(tcp: &mut TcpStream, state: &State, req: &Request) {
    match state.media.get(&req.path) {
        Some(blob) => {
            state.stats.bump(&state.stats.media_downloads);
            http1::respond(tcp, 200, "application/octet-stream", &blob.data).await;
        }
        None => {
            let body = json!({ "error": format!("no media at {}", req.path) });
            json_reply(tcp, state, 404, &body).await;
        }
    }
}
