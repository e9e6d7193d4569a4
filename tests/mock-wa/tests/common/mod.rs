//! Drives whatsapp-rust's own Bot, unmodified, against the mock: a small
//! WebSocket transport on tokio-tungstenite, an HTTP client that reaches the
//! mock's media host and nothing else, and the library's in-memory store.

#![allow(dead_code)] // Each test binary uses a different subset.

use futures_util::{SinkExt as _, StreamExt as _};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;
use whatsapp_rust::async_channel;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::buffa::MessageField;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::download::MediaType;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore::net::{
    DisconnectReason, HttpClient, HttpRequest, HttpResponse, Transport, TransportEvent,
    TransportFactory,
};
use whatsapp_rust::wacore::store::InMemoryBackend;
use whatsapp_rust::wacore::store::traits::Backend;
use whatsapp_rust::wacore_binary::Jid;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, TokioRuntime};

type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

struct WsTransport {
    sink: Mutex<WsSink>,
    /// The read half lives in this task; ending it is what closes the socket
    /// when the client drops the transport (e.g. after its own timeout).
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for WsTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[whatsapp_rust::async_trait]
impl Transport for WsTransport {
    async fn send(&self, data: Bytes) -> anyhow::Result<()> {
        self.sink.lock().await.send(Message::Binary(data)).await?;
        Ok(())
    }

    async fn disconnect(&self) {
        let _ = self.sink.lock().await.close().await;
    }
}

/// Connects to a fixed `ws://` URL for every connection attempt.
pub struct WsFactory {
    pub url: String,
}

#[whatsapp_rust::async_trait]
impl TransportFactory for WsFactory {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
        let (ws, _) = tokio_tungstenite::connect_async(&self.url).await?;
        let (sink, mut source) = ws.split();
        let (tx, rx) = async_channel::unbounded();
        let _ = tx.send(TransportEvent::Connected).await;
        let reader = tokio::spawn(async move {
            let reason = loop {
                match source.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        if tx.send(TransportEvent::DataReceived(b)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        break DisconnectReason::ServerClose {
                            code: frame.as_ref().map(|f| u16::from(f.code)),
                            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break DisconnectReason::ReadError(e.to_string()),
                    None => break DisconnectReason::StreamEnded,
                }
            };
            let _ = tx.send(TransportEvent::Disconnected(reason)).await;
        });
        Ok((
            Arc::new(WsTransport {
                sink: Mutex::new(sink),
                reader,
            }),
            rx,
        ))
    }
}

/// The client's HTTP: `https://MEDIA_HOST/...` (the `IP:PORT` the mock's
/// `media_conn` names) is fetched over plain HTTP from that loopback address;
/// every other URL fails (all of them without a media host), so nothing
/// leaves the machine.
pub struct MediaHttp {
    pub media_host: Option<String>,
}

#[whatsapp_rust::async_trait]
impl HttpClient for MediaHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let host = self.media_host.as_deref().unwrap_or("no media host");
        let Some(rest) = request.url.strip_prefix(&format!("https://{host}/")) else {
            anyhow::bail!(
                "only the mock's media host is reachable in tests, not {}",
                request.url
            )
        };
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = request.body.clone().unwrap_or_default();
        let (status_code, body) =
            http_request(host, &request.method, &format!("/{rest}"), &headers, &body).await?;
        Ok(HttpResponse { status_code, body })
    }
}

/// One plain HTTP/1.1 request to `addr` (the server closes after answering):
/// status and body.
pub async fn http_request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body).await?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{addr} answered no HTTP head"))?;
    let status = std::str::from_utf8(&raw[..split])?
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{addr} answered a bad status line"))?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// A running whatsapp-rust Bot plus the stream of its events.
pub struct TestClient {
    pub handle: BotHandle,
    pub client: Arc<Client>,
    pub backend: Arc<dyn Backend>,
    events: mpsc::UnboundedReceiver<Arc<Event>>,
}

impl TestClient {
    /// Starts a bot on `backend` (pass the previous client's to "restart"),
    /// with no media host.
    pub async fn start(url: &str, backend: Option<Arc<dyn Backend>>) -> Self {
        Self::start_on(url, None, backend).await
    }

    /// Starts a bot whose HTTP reaches the mock's media host `media_host`.
    pub async fn start_on(
        url: &str,
        media_host: Option<String>,
        backend: Option<Arc<dyn Backend>>,
    ) -> Self {
        let backend = backend.unwrap_or_else(|| Arc::new(InMemoryBackend::new()));
        let (tx, events) = mpsc::unbounded_channel();
        let bot = Bot::builder()
            .with_backend_arc(backend.clone())
            .with_transport_factory(WsFactory {
                url: url.to_owned(),
            })
            .with_http_client(MediaHttp { media_host })
            .with_runtime(TokioRuntime)
            .with_version((2, 3000, 1_000_000_000))
            .skip_history_sync()
            .on_event(move |event, _client| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .build()
            .await
            .expect("bot builds");
        let handle = bot.spawn();
        let client = handle.client();
        Self {
            handle,
            client,
            backend,
            events,
        }
    }

    /// Consumes events until `pick` returns `Some`, failing after `timeout`.
    pub async fn wait_event<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    if let Some(v) = pick(&event) {
                        return v;
                    }
                }
                Ok(None) => panic!("event stream ended while waiting for {what}"),
                Err(_) => panic!("no {what} event within {timeout:?}"),
            }
        }
    }

    /// The message with id `id`, from the `Messages` events.
    pub async fn wait_message(&mut self, id: &str) -> wa::Message {
        self.wait_event(
            Duration::from_secs(30),
            &format!("message {id}"),
            |e| match e {
                Event::Messages(batch) => batch
                    .iter()
                    .find(|m| m.info.id == id)
                    .map(|m| (*m.message).clone()),
                _ => None,
            },
        )
        .await
    }

    /// Sends `message` to `to` and waits for the server's ack; the id.
    pub async fn send_acked(&mut self, to: Jid, message: wa::Message) -> String {
        let sent = self
            .client
            .send_message(to, message)
            .await
            .expect("send completes");
        let id = sent.message_id;
        self.wait_event(Duration::from_secs(30), "ServerAck", |e| match e {
            Event::ServerAck(a) if a.id == id => Some(()),
            _ => None,
        })
        .await;
        id
    }

    /// Uploads `data` to the mock's media host and returns the image (or,
    /// with a `file_name`, document) message that points at it.
    pub async fn upload_message(
        &self,
        data: Vec<u8>,
        mimetype: &str,
        file_name: Option<&str>,
        caption: Option<&str>,
    ) -> wa::Message {
        let kind = if file_name.is_some() {
            MediaType::Document
        } else {
            MediaType::Image
        };
        let up = self
            .client
            .upload(data, kind, UploadOptions::default())
            .await
            .expect("the upload to the mock's media host succeeds");
        let mut message = wa::Message::default();
        if let Some(name) = file_name {
            message.document_message = MessageField::some(wa::message::DocumentMessage {
                url: Some(up.url),
                mimetype: Some(mimetype.into()),
                file_name: Some(name.into()),
                caption: caption.map(Into::into),
                file_sha256: Some(up.file_sha256.to_vec()),
                file_length: Some(up.file_length),
                media_key: Some(up.media_key.to_vec()),
                file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                direct_path: Some(up.direct_path),
                media_key_timestamp: Some(up.media_key_timestamp),
                ..Default::default()
            });
        } else {
            message.image_message = MessageField::some(wa::message::ImageMessage {
                url: Some(up.url),
                mimetype: Some(mimetype.into()),
                caption: caption.map(Into::into),
                file_sha256: Some(up.file_sha256.to_vec()),
                file_length: Some(up.file_length),
                media_key: Some(up.media_key.to_vec()),
                file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                direct_path: Some(up.direct_path),
                media_key_timestamp: Some(up.media_key_timestamp),
                ..Default::default()
            });
        }
        message
    }

    pub async fn wait_connected(&mut self, timeout: Duration) {
        self.wait_event(timeout, "Connected", |e| {
            matches!(e, Event::Connected(_)).then_some(())
        })
        .await
    }

    pub async fn shutdown(self) -> Arc<dyn Backend> {
        let backend = self.backend.clone();
        self.handle.shutdown().await;
        backend
    }
}

/// A fresh client paired through a QR scan and connected.
pub async fn paired_client(mock: &mock_wa::MockHandle) -> (TestClient, String) {
    paired_client_within(mock, Duration::from_secs(60)).await
}

/// [`paired_client`] with a deadline for each step (QR, then Connected);
/// many clients in one process share two cores and need longer.
pub async fn paired_client_within(
    mock: &mock_wa::MockHandle,
    step: Duration,
) -> (TestClient, String) {
    let mut c = TestClient::start_on(&mock.ws_url(), Some(mock.media_host()), None).await;
    let qr = c
        .wait_event(step, "PairingQrCode", |e| match e {
            Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await;
    let jid = mock.scan(&qr).await.expect("scan pairs the device");
    c.wait_connected(step).await;
    (c, jid)
}

/// Log output for debugging a failing test: `RUST_LOG=mock_wa=debug`.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// One HTTP/1.1 request to the admin API; returns status and JSON body.
pub async fn admin_http(
    mock: &mock_wa::MockHandle,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let addr = mock.admin_url().trim_start_matches("http://").to_string();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, reply) = http_request(
        &addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
    .expect("the admin API answers");
    (status, serde_json::from_slice(&reply).expect("json body"))
}

/// What `POST /admin/deliver` takes under `media`, for in-process calls.
pub fn media_request(
    kind: &str,
    mimetype: &str,
    filename: Option<&str>,
    caption: Option<&str>,
    data: &[u8],
) -> mock_wa::messaging::MediaRequest {
    use base64::Engine as _;
    mock_wa::messaging::MediaRequest {
        kind: kind.into(),
        mimetype: mimetype.into(),
        filename: filename.map(Into::into),
        caption: caption.map(Into::into),
        data_base64: base64::prelude::BASE64_STANDARD.encode(data),
    }
}
