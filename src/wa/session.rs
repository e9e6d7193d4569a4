//! One account's whatsapp-rust client, driven one connection at a time.
//!
//! The library's `Client::run` owns a reconnect loop with its own backoff.
//! walink's reconnect policy, counters and health are ours (DESIGN.md), so
//! auto-reconnect is switched off: each `run_once` is then exactly one pass
//! (connect, serve until the connection ends, tear down) and the account
//! supervisor decides what comes next.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::events::{Forwarder, WaEvent};
use super::http::WaHttpClient;
use super::inbox::{DurableInbox, InboxSink};
use super::transport::WsTransportFactory;
use super::version::{VersionKeeper, VersionStatus};
use crate::net::http::{HostMap, HttpClient};
use crate::net::{Dialer, IpFamily, Proxy};
use crate::store::SledBackend;
use thiserror::Error;
use tokio::sync::mpsc;
use wacore::iq::keepalive::KeepaliveSpec;
use wacore::pair_code::PairCodeOptions;
use wacore::store::traits::Backend;
use wacore::types::events::Subscription;
use whatsapp_rust::store::persistence_manager::PersistenceManager;
use whatsapp_rust::{Client, Jid, RawNodeLease, SendOptions, TokioRuntime};

tokio::task_local! {
    /// Why the library's connect failed, as its log line says (it reports
    /// the error nowhere else); set by [`note_connect_error`] while a
    /// `run_once` of this task runs.
    static CONNECT_ERROR: std::cell::RefCell<Option<String>>;
}

/// Called by the log layer with the library's "Failed to connect: …" text:
/// it becomes the attempt's reason when the dial itself did not fail.
pub fn note_connect_error(why: &str) {
    let _ = CONNECT_ERROR.try_with(|e| *e.borrow_mut() = Some(why.to_owned()));
}

/// The library changes the device record (whether the server holds its
/// prekeys, the prekey watermarks, the push name, the signed prekey's last
/// rotation) in memory and leaves saving it to a background saver, which
/// wakes at each change and on this interval, and saves only what changed.
/// Without it those changes were saved only by a clean stop: after every
/// kill -9 the next start uploaded 812 more prekeys, and kept them all in
/// the state and in every backup.
const DEVICE_SAVE_EVERY: Duration = Duration::from_secs(60);

/// How long a logout may wait for the server before we just disconnect.
const LOGOUT_GRACE: Duration = Duration::from_secs(10);

/// Connection settings shared by every account (the proxy may be the
/// account's own).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionSettings {
    pub url: String,
    pub connect_timeout: Duration,
    pub ip_family: IpFamily,
    pub proxy: Option<Proxy>,
    /// Pins the WhatsApp Web version instead of fetching it from
    /// web.whatsapp.com: needed offline (tests, mock servers).
    pub client_version: Option<(u32, u32, u32)>,
}

impl ConnectionSettings {
    /// A dialer for these settings. Each session keeps its own, so what it
    /// learns about the IP families lasts across that account's reconnects.
    pub fn dialer(&self) -> Dialer {
        Dialer::new(self.ip_family, self.proxy.clone(), self.connect_timeout)
    }

    /// An HTTP client on a dialer of these settings (version page, media).
    pub fn http_client(&self) -> HttpClient {
        HttpClient::new(self.dialer(), HostMap::from_env())
    }
}

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("could not set up the WhatsApp client: {0}")]
    Build(String),
    #[error("not connected to WhatsApp: wait for the account to reconnect, then retry")]
    NotConnected,
    #[error("invalid recipient {0:?}: expected a JID such as 15551234567@s.whatsapp.net")]
    BadRecipient(String),
    #[error("WhatsApp refused the message: {0}")]
    Send(String),
    #[error("uploading the file failed: {0}")]
    Upload(String),
    /// Cannot go out however often it is tried.
    #[error("{0}")]
    Unsendable(String),
    #[error("could not request a pair code: {0}")]
    PairCode(String),
    #[error("keepalive failed: {0}")]
    Keepalive(String),
    #[error("WhatsApp did not answer: {0}")]
    Query(String),
}

/// A built client plus the subscription that feeds its events to us.
pub struct Session {
    pub(super) client: Arc<Client>,
    /// The account's own HTTP client, for media.
    pub(super) http: HttpClient,
    dial_error: Arc<std::sync::Mutex<Option<String>>>,
    version: VersionKeeper,
    _subscription: Subscription,
    _raw_nodes: RawNodeLease,
}

impl Session {
    /// Builds the client over `store`, account `account`'s state, and
    /// returns the stream of its events. With `inbox`, received messages are
    /// acknowledged to the server only once `inbox` has stored them.
    /// `on_version` hears every change of the version in use or of its
    /// fetch's outcome.
    pub async fn build(
        account: &str,
        store: Arc<SledBackend>,
        settings: &ConnectionSettings,
        inbox: Option<Arc<dyn InboxSink>>,
        on_version: Arc<dyn Fn(VersionStatus) + Send + Sync>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<WaEvent>), SessionError> {
        let backend: Arc<dyn Backend> = store.clone();
        let persistence = PersistenceManager::new(backend)
            .await
            .map_err(|e| SessionError::Build(format!("loading the stored session: {e}")))?;
        let transport = WsTransportFactory::with_dialer(
            settings.url.clone(),
            settings.connect_timeout,
            settings.dialer(),
        );
        let dial_error = transport.last_error();
        let http = settings.http_client();
        let version = VersionKeeper::new(
            account,
            store,
            http.clone(),
            settings.client_version,
            on_version,
        );
        let mut builder = Client::builder()
            .with_runtime(TokioRuntime)
            .with_persistence_manager(Arc::new(persistence))
            .with_transport_factory(transport)
            .with_http_client(WaHttpClient::new(http.clone()))
            .with_skip_history_sync(true)
            .with_background_saver_interval(DEVICE_SAVE_EVERY);
        if let Some(version) = settings.client_version {
            builder = builder.with_version_override(version);
        }
        if let Some(inbox) = inbox {
            builder = builder.with_inbound_durability_hook_arc(Arc::new(DurableInbox(inbox)));
        }
        let client = builder
            .build()
            .await
            .map_err(|e| SessionError::Build(e.to_string()))?
            .into_client();
        client.enable_auto_reconnect.store(false, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let subscription = client.subscribe_handler(Arc::new(Forwarder { tx }));
        let raw_nodes = client.acquire_raw_node_forwarding();
        Ok((
            Self {
                client,
                http,
                dial_error,
                version,
                _subscription: subscription,
                _raw_nodes: raw_nodes,
            },
            rx,
        ))
    }

    /// One connection: returns when it has ended, for whatever reason. Events
    /// tell why.
    pub async fn run_once(&self) {
        self.version
            .prepare(&self.client.persistence_manager())
            .await;
        let failed = CONNECT_ERROR
            .scope(std::cell::RefCell::new(None), async {
                self.client.run().await;
                CONNECT_ERROR.with(|e| e.borrow_mut().take())
            })
            .await;
        if let Some(why) = failed {
            let mut dial_error = self.dial_error.lock().unwrap_or_else(|p| p.into_inner());
            dial_error.get_or_insert(why);
        }
    }

    /// The login with the current version succeeded: keep it.
    pub fn version_worked(&self) {
        self.version.worked();
    }

    /// Why the last connect failed before the login, if it did: the dial's
    /// error, else the library's (taken: the next call says None).
    pub fn take_dial_error(&self) -> Option<String> {
        self.dial_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Closes the connection on purpose (flushing pending sends and store).
    pub async fn disconnect(&self) {
        self.client.disconnect().await;
    }

    /// Drops the current connection but keeps the client usable, so the
    /// next `run_once` connects again.
    pub async fn end_connection(&self) {
        self.client.reconnect_immediately().await;
    }

    /// Asks the server to remove this device, then disconnects. Bounded: a
    /// server that does not answer must not hold the account's supervisor
    /// (and with it the watchdog) hostage; the local disconnect happens anyway.
    pub async fn logout(&self) {
        if tokio::time::timeout(LOGOUT_GRACE, self.client.logout())
            .await
            .is_err()
        {
            self.client.disconnect().await;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected() && self.client.is_logged_in()
    }

    /// The phone-number JID this device is linked to, if paired.
    pub fn jid(&self) -> Option<String> {
        self.client
            .persistence_manager()
            .get_device_snapshot()
            .pn
            .as_ref()
            .map(|j| j.to_string())
    }

    /// Sends `message` (see [`super::outgoing`]) to `to`, a JID (the IPC
    /// layer normalizes phone numbers), and returns the WhatsApp message id.
    /// With `message_id`, the same id is reused, so a retried send is
    /// recognised as the same message by the recipient instead of arriving
    /// twice.
    pub async fn send_message(
        &self,
        to: &str,
        message: whatsapp_rust::waproto::whatsapp::Message,
        message_id: Option<String>,
    ) -> Result<String, SessionError> {
        if !self.is_connected() {
            return Err(SessionError::NotConnected);
        }
        let jid: Jid = to
            .parse()
            .map_err(|_| SessionError::BadRecipient(to.to_string()))?;
        let options = match message_id {
            Some(id) => SendOptions::default().with_message_id(id),
            None => SendOptions::default(),
        };
        self.client
            .send_message_with_options(jid, message, options)
            .await
            .map(|r| r.message_id)
            .map_err(|e| SessionError::Send(e.to_string()))
    }

    /// Encrypts `data` with `media_key` and uploads it through the
    /// account's HTTP client. The same key and file always give the same
    /// blob and hashes, so an upload repeated after a crash names the same
    /// file. No streaming sidecar: the message must be rebuildable from
    /// what the outbox keeps (see [`super::outgoing`]).
    pub async fn upload(
        &self,
        data: Vec<u8>,
        kind: crate::store::MediaKind,
        media_key: [u8; 32],
    ) -> Result<crate::store::Uploaded, SessionError> {
        if !self.is_connected() {
            return Err(SessionError::NotConnected);
        }
        let options = whatsapp_rust::upload::UploadOptions::new()
            .with_media_key(media_key)
            .with_streaming_sidecar(false);
        let r = self
            .client
            .upload(data, super::outgoing::media_type(kind), options)
            .await
            .map_err(|e| SessionError::Upload(format!("{e:#}")))?;
        Ok(crate::store::Uploaded {
            url: r.url,
            direct_path: r.direct_path,
            file_sha256: r.file_sha256,
            file_enc_sha256: r.file_enc_sha256,
            file_length: r.file_length,
            media_key_timestamp: r.media_key_timestamp,
        })
    }

    /// Starts phone-number pairing; the code also arrives as an event.
    pub async fn pair_code(&self, phone: &str) -> Result<String, SessionError> {
        let options = PairCodeOptions {
            phone_number: phone.to_string(),
            ..Default::default()
        };
        self.client
            .pair_with_code(options)
            .await
            .map_err(|e| SessionError::PairCode(e.to_string()))
    }

    /// Round trip of one keepalive IQ, the library's own liveness probe.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, SessionError> {
        if !self.is_connected() {
            return Err(SessionError::NotConnected);
        }
        let start = Instant::now();
        self.client
            .execute(KeepaliveSpec::with_timeout(timeout))
            .await
            .map_err(|e| SessionError::Keepalive(e.to_string()))?;
        Ok(start.elapsed())
    }
}
