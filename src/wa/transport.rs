//! The WebSocket byte pipe under whatsapp-rust, on tokio-tungstenite.
//!
//! It is ours rather than the library's transport so the URL (a loopback
//! mock in tests), the connect timeout and, later, proxies come from walink's
//! config. Framing and Noise stay in the library: this only moves bytes and
//! reports how the stream ended, which the supervisor needs to tell a routine
//! recycle from a failure.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wacore::net::{
    DisconnectReason, Transport, TransportEvent, TransportFactory, WHATSAPP_WEB_ORIGIN,
};
use whatsapp_rust::bytes::Bytes;

type WsSink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// How long a polite close may take before we drop the socket: a
/// black-holed peer never answers the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Frames buffered between the socket reader and the library; the reader
/// waits when full, which pushes back on the server instead of growing memory.
const EVENT_BUFFER: usize = 256;

/// Creates one WebSocket connection per call, to a fixed URL.
#[derive(Debug, Clone)]
pub struct WsTransportFactory {
    url: String,
    connect_timeout: Duration,
    /// Why the last dial failed. The library logs only "failed to open
    /// transport"; the operator needs the cause (refused, timeout, TLS…).
    last_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl WsTransportFactory {
    pub fn new(url: impl Into<String>, connect_timeout: Duration) -> Self {
        Self {
            url: url.into(),
            connect_timeout,
            last_error: Arc::default(),
        }
    }

    /// A handle on the last dial error, shared with clones of this factory.
    pub fn last_error(&self) -> Arc<std::sync::Mutex<Option<String>>> {
        self.last_error.clone()
    }

    async fn dial(&self) -> anyhow::Result<WebSocketStream<MaybeTlsStream<TcpStream>>> {
        let mut request = self.url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_static(WHATSAPP_WEB_ORIGIN));
        // Nagle off: the library writes a stanza as several small frames, and
        // with Nagle each later one waits for the server's delayed ACK
        // (40 ms on Linux), which was most of a send's round trip.
        let connect = tokio_tungstenite::connect_async_with_config(request, None, true);
        let (ws, _response) = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {:?}", self.connect_timeout))??;
        Ok(ws)
    }
}

#[async_trait::async_trait]
impl TransportFactory for WsTransportFactory {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
        let dialed = self
            .dial()
            .await
            .map_err(|e| e.context(format!("connecting to {}", self.url)));
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            dialed.as_ref().err().map(|e| format!("{e:#}"));
        let ws = dialed?;
        let (sink, mut stream) = ws.split();
        let (tx, rx) = async_channel::bounded(EVENT_BUFFER);
        // Cannot fail: the receiver is still in our hands.
        let _ = tx.send(TransportEvent::Connected).await;

        let events = tx.clone();
        let reader = tokio::spawn(async move {
            let reason = loop {
                match stream.next().await {
                    Some(Ok(Message::Binary(data))) => {
                        if events
                            .send(TransportEvent::DataReceived(data))
                            .await
                            .is_err()
                        {
                            break DisconnectReason::Unknown;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        break DisconnectReason::ServerClose {
                            code: frame.as_ref().map(|f| u16::from(f.code)),
                            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        };
                    }
                    // Pings are answered by tungstenite itself; text frames are
                    // not part of the WhatsApp protocol.
                    Some(Ok(_)) => {}
                    // EOF without a close frame is how WhatsApp recycles a
                    // connection; tungstenite reports it as a protocol error,
                    // or as a reset when the server closed with our last
                    // bytes still unread in its buffer.
                    Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                        break DisconnectReason::StreamEnded;
                    }
                    Some(Err(WsError::Io(e)))
                        if e.kind() == std::io::ErrorKind::ConnectionReset =>
                    {
                        break DisconnectReason::StreamEnded;
                    }
                    Some(Err(e)) => break DisconnectReason::ReadError(e.to_string()),
                    None => break DisconnectReason::StreamEnded,
                }
            };
            let _ = events.send(TransportEvent::Disconnected(reason)).await;
        });

        let transport = WsTransport {
            sink: tokio::sync::Mutex::new(sink),
            reader: reader.abort_handle(),
            events: tx,
        };
        Ok((Arc::new(transport), rx))
    }
}

struct WsTransport {
    sink: tokio::sync::Mutex<WsSink>,
    reader: AbortHandle,
    events: async_channel::Sender<TransportEvent>,
}

#[async_trait::async_trait]
impl Transport for WsTransport {
    async fn send(&self, data: Bytes) -> anyhow::Result<()> {
        self.sink
            .lock()
            .await
            .send(Message::Binary(data))
            .await
            .map_err(|e| anyhow::anyhow!("websocket send failed: {e}"))
    }

    async fn disconnect(&self) {
        let closed = tokio::time::timeout(CLOSE_GRACE, async {
            let _ = self.sink.lock().await.close().await;
        })
        .await;
        if closed.is_err() {
            // The reader may be stuck on a silent peer: stop it and report
            // the end ourselves so the library's read loop is not left waiting.
            self.reader.abort();
            let _ = self
                .events
                .try_send(TransportEvent::Disconnected(DisconnectReason::Unknown));
        }
    }
}

impl Drop for WsTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
