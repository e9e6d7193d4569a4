//! Starting the server and driving it in-process.

use crate::admin;
use crate::cert::ServerIdentity;
use crate::config::MockConfig;
use crate::connection;
use crate::handlers::{BasicHandlers, StanzaHandlers};
use crate::media;
use crate::messaging::{Messaging, MessagingConfig, SignalHandlers};
use crate::pairing::{self, PairError};
use crate::state::{DeviceInfo, Fault, ServerState, State};
use crate::stats::StatsSnapshot;
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::warn;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot bind {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot generate the server's keys: {0}")]
    Keys(String),
}

#[derive(Debug, Error)]
#[error("condition not met within {timeout:?}; last stats: {last:?}")]
pub struct WaitTimeout {
    pub timeout: Duration,
    pub last: StatsSnapshot,
}

/// Entry point: `MockServer::start(MockConfig::default()).await?`.
pub struct MockServer;

impl MockServer {
    /// Starts with the Signal messaging side (default messaging config).
    pub async fn start(config: MockConfig) -> Result<MockHandle, StartError> {
        Self::start_with_messaging(config, MessagingConfig::default()).await
    }

    /// Starts with the Signal messaging side configured by `messaging`.
    pub async fn start_with_messaging(
        config: MockConfig,
        messaging: MessagingConfig,
    ) -> Result<MockHandle, StartError> {
        let messaging = Messaging::new(messaging);
        let handlers = Arc::new(SignalHandlers::new(messaging.clone()));
        let mut handle = Self::start_with(config, handlers).await?;
        handle.messaging = Some(messaging);
        Ok(handle)
    }

    /// Starts with the minimal [`BasicHandlers`] (no messaging side).
    pub async fn start_basic(config: MockConfig) -> Result<MockHandle, StartError> {
        Self::start_with(config, Arc::new(BasicHandlers)).await
    }

    /// Starts with custom stanza handlers (the Signal side).
    pub async fn start_with(
        config: MockConfig,
        handlers: Arc<dyn StanzaHandlers>,
    ) -> Result<MockHandle, StartError> {
        let ws = bind("websocket", &config.listen).await?;
        let admin_listener = bind("admin", &config.admin_listen).await?;
        let media_listener = bind("media", &config.media_listen).await?;
        let ws_addr = local_addr(&ws, &config.listen)?;
        let admin_addr = local_addr(&admin_listener, &config.admin_listen)?;
        let media_addr = local_addr(&media_listener, &config.media_listen)?;
        let identity = ServerIdentity::generate().map_err(|e| StartError::Keys(e.to_string()))?;
        let state: State = Arc::new(ServerState::new(config, identity));
        state.media.set_host(media_addr.to_string());

        let accept_state = state.clone();
        let accept_handlers = handlers.clone();
        let ws_task = tokio::spawn(async move {
            loop {
                match ws.accept().await {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        tokio::spawn(connection::serve(
                            accept_state.clone(),
                            accept_handlers.clone(),
                            tcp,
                        ));
                    }
                    // EMFILE and friends: keep accepting once resources free up.
                    Err(e) => {
                        warn!("websocket accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        let admin_task = tokio::spawn(admin::serve(admin_listener, state.clone(), handlers));
        let media_task = tokio::spawn(media::serve(media_listener, state.clone()));
        Ok(MockHandle {
            state,
            ws_addr,
            admin_addr,
            media_addr,
            tasks: vec![ws_task, admin_task, media_task],
            messaging: None,
        })
    }
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            what,
            addr: addr.to_owned(),
            source,
        })
}

fn local_addr(l: &TcpListener, addr: &str) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|source| StartError::Bind {
        what: "resolved",
        addr: addr.to_owned(),
        source,
    })
}

/// A running server. Dropping it stops accepting connections.
pub struct MockHandle {
    state: State,
    ws_addr: SocketAddr,
    admin_addr: SocketAddr,
    media_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    messaging: Option<Arc<Messaging>>,
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl MockHandle {
    /// The messaging side, when started with it.
    pub fn messaging(&self) -> Option<&Arc<Messaging>> {
        self.messaging.as_ref()
    }

    /// `ws://127.0.0.1:PORT/ws/chat`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.ws_addr, connection::WS_PATH)
    }

    /// `http://127.0.0.1:PORT` (routes live under `/admin/`).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// `127.0.0.1:PORT`: the media host, as `media_conn` names it. Clients
    /// build `https://` URLs on it; it speaks plain HTTP.
    pub fn media_host(&self) -> String {
        self.media_addr.to_string()
    }

    /// The root key that signs the server's Noise certificate chain.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.state.identity.root_public()
    }

    /// [`Self::root_public_key`] in standard base64.
    pub fn root_public_key_b64(&self) -> String {
        BASE64_STANDARD.encode(self.root_public_key())
    }

    /// Shared state, for handlers and advanced tests.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Pairs the device showing `qr` to a new account; returns its JID once
    /// the client's signed reply verified.
    pub async fn scan(&self, qr: &str) -> Result<String, PairError> {
        pairing::scan(&self.state, qr, None).await
    }

    /// Like [`Self::scan`], as another device of the account `phone`.
    pub async fn scan_for(&self, qr: &str, phone: &str) -> Result<String, PairError> {
        pairing::scan(&self.state, qr, Some(phone)).await
    }

    /// The phone of account `phone` takes the pairing code `code` a client
    /// shows; returns the device JID once the client's signed reply verified.
    pub async fn enter_pair_code(&self, phone: &str, code: &str) -> Result<String, PairError> {
        crate::pair_code::enter_code(&self.state, phone, code).await
    }

    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.state.device_infos()
    }

    /// Injects `fault` into device `target`'s session or into every
    /// connection (`"all"`); returns how many connections it hit.
    pub fn fault(&self, target: &str, fault: Fault) -> usize {
        self.state.inject_fault(target, fault)
    }

    /// Refuses new connections for `seconds` (0 ends refusing).
    pub fn refuse(&self, seconds: u64) {
        self.state.refuse_for(seconds);
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.state.stats.snapshot()
    }

    /// Waits until `cond` holds for the stats (re-checked on every change),
    /// or fails after `timeout` with the last snapshot.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&StatsSnapshot) -> bool,
    ) -> Result<StatsSnapshot, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.state.stats.changed();
            let snap = self.stats();
            if cond(&snap) {
                return Ok(snap);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(WaitTimeout {
                    timeout,
                    last: self.stats(),
                });
            }
        }
    }
}
