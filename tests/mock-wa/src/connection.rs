//! One task per WebSocket connection: WA framing, the Noise handshake, then
//! either the pairing flow (new device) or a logged-in session, with stanzas
//! routed to [`crate::iq`] and [`crate::handlers`]. A misbehaving client
//! ends its own connection and is logged; it never affects the server.

use crate::handlers::{Ctx, StanzaHandlers};
use crate::iq::{self, IqAnswer};
use crate::nodefmt::{attr, jid_value, render, server_jid};
use crate::noise::{self, ClientHello, Completed, NoiseTransport};
use crate::pairing::{self, PairOffer, Registration};
use crate::state::{Command, Device, Fault, PN_SERVER, SessionHandle, State, device_jid};
use crate::wire::{FrameReader, encode_frame};
use buffa::Message as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{debug, info, warn};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::whatsapp as wa;

/// The only WebSocket path the server accepts, as WhatsApp's edge does.
pub const WS_PATH: &str = "/ws/chat";

#[derive(Debug, Error)]
enum ConnError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("framing: {0}")]
    Wire(#[from] crate::wire::WireError),
    #[error("noise: {0}")]
    Noise(#[from] noise::NoiseServerError),
    #[error("client payload: {0}")]
    Payload(String),
    #[error("stanza: {0}")]
    Stanza(String),
    #[error("handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("client closed the connection")]
    Closed,
}

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;
type Source = SplitStream<WebSocketStream<TcpStream>>;

/// Accepts one TCP connection and runs it to the end.
pub async fn serve(state: State, handlers: Arc<dyn StanzaHandlers>, tcp: TcpStream) {
    state.stats.bump(&state.stats.connection_attempts);
    let in_flight = HandshakeInFlight::start(&state);
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    if state.refusing() {
        state.stats.bump(&state.stats.connections_refused);
        debug!(%peer, "refusing connection");
        reject(tcp).await;
        return;
    }
    let ws = match tokio_tungstenite::accept_hdr_async(tcp, check_path).await {
        Ok(ws) => ws,
        Err(e) => {
            warn!(%peer, "websocket upgrade failed: {e}");
            return;
        }
    };
    let (handle, rx) = state.open_connection();
    state.stats.bump(&state.stats.connections_open);
    let (sink, source) = ws.split();
    let mut conn = Connection {
        state: state.clone(),
        handlers,
        handle,
        rx,
        sink,
        source,
        reader: FrameReader::default(),
        transport: None,
        device: None,
        offer: None,
        blackholed: false,
        delay: Duration::ZERO,
        peer,
        refs_expire: None,
        in_flight: Some(in_flight),
    };
    match conn.run().await {
        Ok(()) | Err(ConnError::Closed) => debug!(peer = %conn.peer, "connection ended"),
        // The peer went away (reset, broken pipe): not the client's protocol fault.
        Err(e @ ConnError::Ws(_)) => {
            info!(peer = %conn.peer, device = conn.jid(), "connection lost: {e}");
        }
        Err(e @ ConnError::HandshakeTimeout(_)) => {
            state.stats.bump(&state.stats.handshake_timeouts);
            info!(peer = %conn.peer, "connection ended: {e}");
        }
        Err(e) => {
            state.stats.bump(&state.stats.protocol_errors);
            warn!(peer = %conn.peer, device = conn.jid(), "connection ended: {e}");
        }
    }
    if let Some(offer) = conn.offer.take() {
        let _ = offer
            .done
            .send(Err("connection closed before pairing finished".into()));
    }
    if let Some(d) = &conn.device {
        state.detach_session(&d.jid, conn.handle.conn_id);
    }
    state.close_connection(conn.handle.conn_id);
    state.stats.drop_one(&state.stats.connections_open);
}

/// Upgrade callback: only [`WS_PATH`] gets a WebSocket.
// The signature is tungstenite's `Callback`; its error type is not ours to shrink.
#[allow(clippy::result_large_err)]
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == WS_PATH {
        Ok(resp)
    } else {
        let mut err = ErrorResponse::new(Some(format!("no websocket at {}", req.uri().path())));
        *err.status_mut() = StatusCode::NOT_FOUND;
        Err(err)
    }
}

/// Turns a refused client away with an HTTP 503 instead of an upgrade.
async fn reject(mut tcp: TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let _ = tcp
        .write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
    let _ = tcp.shutdown().await;
}

struct Connection {
    state: State,
    handlers: Arc<dyn StanzaHandlers>,
    handle: SessionHandle,
    rx: UnboundedReceiver<Command>,
    sink: Sink,
    source: Source,
    reader: FrameReader,
    transport: Option<NoiseTransport>,
    /// Set once the device logged in.
    device: Option<Device>,
    /// A pairing waiting for the client's signed reply.
    offer: Option<PairOffer>,
    blackholed: bool,
    /// Set by a `slow` fault: how long each outgoing frame waits.
    delay: Duration,
    peer: String,
    /// When the last pairing ref of an unpaired connection expires.
    refs_expire: Option<tokio::time::Instant>,
    /// Until the device logged in (or the connection turned to pairing).
    in_flight: Option<HandshakeInFlight>,
}

/// A connection counted in `handshakes_in_flight` from its TCP accept to
/// its login, or to its end: what a client's reconnect storm looks like
/// from the server.
struct HandshakeInFlight(State);

impl HandshakeInFlight {
    fn start(state: &State) -> Self {
        state.stats.handshake_started();
        Self(state.clone())
    }
}

impl Drop for HandshakeInFlight {
    fn drop(&mut self) {
        self.0.stats.drop_one(&self.0.stats.handshakes_in_flight);
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What ended the main loop.
enum Flow {
    Continue,
    Stop,
}

impl Connection {
    fn jid(&self) -> &str {
        self.device.as_ref().map_or("-", |d| d.jid.as_str())
    }

    async fn run(&mut self) -> Result<(), ConnError> {
        let timeout = self.state.config.handshake_timeout;
        let done = tokio::time::timeout(timeout, self.handshake())
            .await
            .map_err(|_| ConnError::HandshakeTimeout(timeout))??;
        self.transport = Some(done.transport);
        let payload = wa::ClientPayload::decode_from_slice(&done.payload)
            .map_err(|e| ConnError::Payload(format!("not a ClientPayload protobuf: {e}")))?;

        if let Some(user) = payload.username {
            let device_id = payload.device.unwrap_or(0);
            let jid = device_jid(&user.to_string(), device_id as u16, PN_SERVER);
            let logged_in = self.login(&jid, &done.client_static).await?;
            self.in_flight = None;
            if !logged_in {
                return Ok(());
            }
        } else if let Some(data) = payload.device_pairing_data.as_option() {
            let reg = Registration::from_payload(done.client_static, data).ok_or_else(|| {
                ConnError::Payload("registration data is incomplete or malformed".into())
            })?;
            let node = pairing::issue_refs(&self.state, &self.handle, &reg);
            self.in_flight = None;
            self.send(node).await?;
            let cfg = &self.state.config;
            let last = cfg.qr_ttl * cfg.qr_refs.saturating_sub(1) as u32;
            self.refs_expire = Some(tokio::time::Instant::now() + cfg.qr_first_ttl + last);
        } else {
            return Err(ConnError::Payload(
                "neither a login (username) nor a registration (devicePairingData)".into(),
            ));
        }

        loop {
            // Unpaired connections end when their last ref expired, as the
            // real server's do; a scan in progress keeps it open.
            let refs_expire = self.refs_expire.filter(|_| self.offer.is_none());
            let flow = tokio::select! {
                msg = self.source.next() => self.on_ws(msg).await?,
                () = sleep_until_opt(refs_expire) => {
                    info!(peer = %self.peer, "all pairing refs expired, closing");
                    self.close(CloseCode::Normal).await;
                    Flow::Stop
                }
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await?,
                    None => Flow::Stop,
                },
            };
            if let Flow::Stop = flow {
                return Ok(());
            }
        }
    }

    /// Reads frames until the handshake completes.
    async fn handshake(&mut self) -> Result<Completed, ConnError> {
        let first = self.next_frame().await?;
        let prologue = self
            .reader
            .prologue()
            .ok_or_else(|| ConnError::Stanza("no WA header before the first frame".into()))?;
        if let Some(edge) = self.reader.edge_routing() {
            debug!(peer = %self.peer, len = edge.len(), "client sent edge routing info");
        }
        let state = self.state.clone();
        let stats = &state.stats;
        match ClientHello::parse(&first)? {
            ClientHello::Xx { ephemeral } => {
                let (hello, pending) =
                    noise::start_xx(&self.state.identity, &prologue, &ephemeral, false)?;
                self.send_raw(hello).await?;
                let finish = self.next_frame().await?;
                let done = pending.finish(&finish)?;
                stats.bump(&stats.handshakes_xx);
                Ok(done)
            }
            ClientHello::Ik {
                ephemeral,
                encrypted_static,
                encrypted_payload,
            } => {
                let pending = noise::read_ik(
                    &self.state.identity,
                    &prologue,
                    &ephemeral,
                    &encrypted_static,
                    &encrypted_payload,
                )?;
                let known = pending
                    .as_ref()
                    .is_some_and(|p| self.state.knows_noise_key(&p.client_static));
                match pending {
                    Some(p) if known && self.state.config.accept_ik => {
                        let (hello, done) = p.accept(&self.state.identity)?;
                        self.send_raw(hello).await?;
                        stats.bump(&stats.handshakes_ik);
                        Ok(done)
                    }
                    _ => {
                        debug!(peer = %self.peer, "IK not acceptable, answering with XXfallback");
                        let (hello, pending) =
                            noise::start_xx(&self.state.identity, &prologue, &ephemeral, true)?;
                        self.send_raw(hello).await?;
                        let finish = self.next_frame().await?;
                        let done = pending.finish(&finish)?;
                        stats.bump(&stats.handshakes_xx_fallback);
                        Ok(done)
                    }
                }
            }
        }
    }

    /// Checks the device and sends `<success>` (or `<failure>`); `false`
    /// means the login was refused and the connection should end.
    async fn login(&mut self, jid: &str, client_static: &[u8; 32]) -> Result<bool, ConnError> {
        let device = match self.state.device(jid) {
            Some(d) if &d.noise_public == client_static => d,
            known => {
                let why = if known.is_some() {
                    "wrong noise key"
                } else {
                    "unknown device"
                };
                info!(peer = %self.peer, %jid, "login refused: {why}");
                self.state.stats.bump(&self.state.stats.login_failures);
                let failure = NodeBuilder::new("failure")
                    .attr("reason", "401")
                    .attr("location", "mock")
                    .build();
                self.send(failure).await?;
                self.close(CloseCode::Normal).await;
                return Ok(false);
            }
        };
        if let Some(old) = self.state.attach_session(&device.jid, self.handle.clone())
            && old.conn_id != self.handle.conn_id
        {
            // The real server replaces the older session of the same device.
            old.fault(Fault::StreamError(440));
        }
        self.device = Some(device.clone());
        let now = pairing::unix_now();
        let success = NodeBuilder::new("success")
            .attr("t", now.to_string())
            .attr("lid", jid_value(&device.lid))
            .attr("props", "1")
            .attr("abprops", "1")
            .attr("location", "mock")
            .attr("creation", device.paired_at.to_string())
            .build();
        self.send(success).await?;
        self.state.stats.bump(&self.state.stats.logins);
        info!(peer = %self.peer, jid = %device.jid, "device logged in");

        let ctx = self.ctx(device);
        let queued = self.handlers.on_login(&ctx).await;
        let count = queued.len();
        for node in queued {
            self.send(node).await?;
        }
        let offline = NodeBuilder::new("ib")
            .attr("from", server_jid())
            .children([NodeBuilder::new("offline")
                .attr("count", count.to_string())
                .build()])
            .build();
        self.send(offline).await?;
        Ok(true)
    }

    fn ctx(&self, device: Device) -> Ctx {
        Ctx {
            state: self.state.clone(),
            device,
        }
    }

    async fn on_ws(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<Flow, ConnError> {
        let data = match msg {
            None => return Err(ConnError::Closed),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(_))) => return Err(ConnError::Closed),
            Some(Ok(other)) => {
                debug!(peer = %self.peer, "ignoring websocket message {other:?}");
                return Ok(Flow::Continue);
            }
        };
        if self.blackholed {
            debug!(peer = %self.peer, len = data.len(), "blackholed: dropping bytes");
            return Ok(Flow::Continue);
        }
        self.reader.feed(&data);
        while let Some(frame) = self.reader.next_frame()? {
            let node = self.decode(&frame)?;
            if let Flow::Stop = self.on_node(node).await? {
                return Ok(Flow::Stop);
            }
            if self.blackholed {
                break;
            }
        }
        Ok(Flow::Continue)
    }

    fn decode(&mut self, frame: &[u8]) -> Result<Node, ConnError> {
        let transport = self
            .transport
            .as_mut()
            .ok_or_else(|| ConnError::Stanza("frame before handshake".into()))?;
        let plain = transport.decrypt(frame)?;
        let unpacked = wacore_binary::util::unpack(&plain)
            .map_err(|e| ConnError::Stanza(format!("cannot unpack frame: {e}")))?;
        let node = wacore_binary::marshal::unmarshal_ref(&unpacked)
            .map_err(|e| ConnError::Stanza(format!("cannot decode node: {e}")))?
            .to_owned();
        Ok(node)
    }

    async fn on_node(&mut self, node: Node) -> Result<Flow, ConnError> {
        let state = self.state.clone();
        let stats = &state.stats;
        stats.bump(&stats.stanzas_in);
        debug!(peer = %self.peer, device = self.jid(), "<- {}", render(&node));

        if node.tag == "iq" {
            if let Some(offer) = self.offer.take() {
                if attr(&node, "id").as_deref() == Some(offer.iq_id.as_str()) {
                    return self.finish_pairing(offer, &node).await;
                }
                self.offer = Some(offer);
            }
            return self.on_iq(node).await;
        }
        let Some(device) = self.device.clone() else {
            // Before login only IQs (pings, pairing replies) make sense.
            debug!(peer = %self.peer, "ignoring <{}> before login", node.tag);
            return Ok(Flow::Continue);
        };
        let ctx = self.ctx(device);
        let replies = match node.tag.as_ref() {
            "message" => {
                stats.bump(&stats.messages_received);
                self.handlers.message(&ctx, &node).await
            }
            "receipt" => self.handlers.receipt(&ctx, &node).await,
            "ack" => self.handlers.ack(&ctx, &node).await,
            // Presence, chatstate and the like need no answer.
            _ => Vec::new(),
        };
        for reply in replies {
            self.send(reply).await?;
        }
        Ok(Flow::Continue)
    }

    async fn on_iq(&mut self, node: Node) -> Result<Flow, ConnError> {
        let state = self.state.clone();
        let stats = &state.stats;
        let replies = match iq::answer(&self.state, self.device.as_ref(), &node) {
            IqAnswer::ClientReply => Vec::new(),
            IqAnswer::Ping(reply) => {
                stats.bump(&stats.pings);
                vec![reply]
            }
            IqAnswer::Reply(reply) => vec![reply],
            IqAnswer::PairCode => vec![crate::pair_code::handle_iq(&state, &self.handle, &node)],
            IqAnswer::Unknown(reply) => {
                stats.bump(&stats.unknown_iqs);
                info!(peer = %self.peer, device = self.jid(), "unknown iq: {}", render(&node));
                vec![reply]
            }
            IqAnswer::Handlers => match self.device.clone() {
                Some(device) => {
                    let ctx = self.ctx(device);
                    match attr(&node, "xmlns").as_deref() {
                        Some("encrypt") => self.handlers.encrypt_iq(&ctx, &node).await,
                        Some("w:g2") => self.handlers.group_iq(&ctx, &node).await,
                        _ => self.handlers.usync_iq(&ctx, &node).await,
                    }
                }
                None => vec![crate::handlers::iq_error(&node, 401, "not-authorized")],
            },
        };
        for reply in replies {
            self.send(reply).await?;
        }
        Ok(Flow::Continue)
    }

    async fn finish_pairing(&mut self, offer: PairOffer, reply: &Node) -> Result<Flow, ConnError> {
        match pairing::verify_reply(&offer, reply) {
            Ok(()) => {
                let jid = offer.device.jid.clone();
                self.state.insert_device(offer.device);
                self.state.stats.bump(&self.state.stats.pairings);
                info!(peer = %self.peer, %jid, "device paired");
                let _ = offer.done.send(Ok(jid));
                // The client logs in again with its new identity.
                self.stream_error(515).await?;
            }
            Err(reason) => {
                warn!(peer = %self.peer, "pairing rejected: {reason}");
                let _ = offer.done.send(Err(reason));
                self.stream_error(401).await?;
            }
        }
        Ok(Flow::Stop)
    }

    async fn on_command(&mut self, cmd: Command) -> Result<Flow, ConnError> {
        match cmd {
            Command::Send(node) => {
                if !self.blackholed {
                    self.send(node).await?;
                }
                Ok(Flow::Continue)
            }
            Command::PairSuccess(offer) => {
                let node = offer.node.clone();
                self.offer = Some(*offer);
                self.send(node).await?;
                Ok(Flow::Continue)
            }
            Command::Fault(Fault::StreamError(_)) if self.blackholed => {
                // A blackholed socket says nothing, not even goodbye.
                Ok(Flow::Stop)
            }
            Command::Fault(fault) => {
                info!(peer = %self.peer, device = self.jid(), "injecting fault {fault:?}");
                match fault {
                    Fault::Close => {
                        self.close(CloseCode::Normal).await;
                        Ok(Flow::Stop)
                    }
                    Fault::Eof => Ok(Flow::Stop),
                    Fault::Blackhole => {
                        self.blackholed = true;
                        Ok(Flow::Continue)
                    }
                    Fault::StreamError(code) => {
                        self.stream_error(code).await?;
                        Ok(Flow::Stop)
                    }
                    Fault::Slow { delay_ms } => {
                        self.delay = Duration::from_millis(delay_ms);
                        Ok(Flow::Continue)
                    }
                }
            }
        }
    }

    /// Sends `<stream:error>` (440 as a `replaced` conflict), then closes.
    /// 401 and 516 also remove the device, as a logout on the phone would.
    async fn stream_error(&mut self, code: u16) -> Result<(), ConnError> {
        let node = if code == 440 {
            NodeBuilder::new("stream:error")
                .children([NodeBuilder::new("conflict")
                    .attr("type", "replaced")
                    .build()])
                .build()
        } else {
            NodeBuilder::new("stream:error")
                .attr("code", code.to_string())
                .build()
        };
        if matches!(code, 401 | 516)
            && let Some(d) = &self.device
        {
            self.state.remove_device(&d.jid);
        }
        self.send(node).await?;
        self.close(CloseCode::Normal).await;
        Ok(())
    }

    async fn close(&mut self, code: CloseCode) {
        let frame = CloseFrame {
            code,
            reason: "".into(),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
    }

    async fn next_frame(&mut self) -> Result<Vec<u8>, ConnError> {
        loop {
            if let Some(frame) = self.reader.next_frame()? {
                return Ok(frame);
            }
            match self.source.next().await {
                None | Some(Ok(Message::Close(_))) => return Err(ConnError::Closed),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Binary(b))) => self.reader.feed(&b),
                Some(Ok(_)) => {}
            }
        }
    }

    async fn send_raw(&mut self, payload: Vec<u8>) -> Result<(), ConnError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let frame = encode_frame(&payload).ok_or_else(|| {
            ConnError::Stanza(format!("frame of {} bytes too large", payload.len()))
        })?;
        self.sink.send(Message::Binary(frame.into())).await?;
        Ok(())
    }

    /// Encrypts and sends one node.
    async fn send(&mut self, node: Node) -> Result<(), ConnError> {
        debug!(peer = %self.peer, device = self.jid(), "-> {}", render(&node));
        let stats = &self.state.stats;
        stats.bump(&stats.stanzas_out);
        if node.tag == "receipt" {
            stats.bump(&stats.receipts_sent);
        }
        let plain = wacore_binary::marshal::marshal(&node)
            .map_err(|e| ConnError::Stanza(format!("cannot encode <{}>: {e}", node.tag)))?;
        let transport = self
            .transport
            .as_mut()
            .ok_or_else(|| ConnError::Stanza("send before handshake".into()))?;
        let sealed = transport.encrypt(&plain)?;
        self.send_raw(sealed).await
    }
}
