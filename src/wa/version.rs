//! Which WhatsApp Web version an account announces, decided by walink so a
//! reconnect never waits for, or fails on, `web.whatsapp.com/sw.js`.
//!
//! whatsapp-rust fetches the version itself when its copy is over a day old,
//! and fails the whole connect when that fetch fails. walink instead sets the
//! version on the device before every connect (the library then sees a fresh
//! one and fetches nothing) and keeps the last one that worked in the
//! account's state: a pinned `connection.client_version` wins; otherwise the
//! stored version is used at once and refreshed in the background (once per
//! start, then daily); with nothing stored, one fetch is tried before the
//! first connect and, failing that, the version built into walink is used.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wacore::store::commands::DeviceCommand;
use whatsapp_rust::store::persistence_manager::PersistenceManager;

use crate::net::http::{HttpClient, Request, RequestBody};
use crate::store::{SledBackend, WebVersion};

/// The version whatsapp-rust 0.7 ships as its device default: recent enough
/// for the server to accept while no fetch has worked yet.
pub const BUILT_IN: (u32, u32, u32) = (2, 3000, 1_042_742_319);
/// Where WhatsApp Web publishes its current version.
pub const SW_URL: &str = "https://web.whatsapp.com/sw.js";
/// A fetched version is refreshed after this long, as the library does.
const FRESH_FOR: Duration = Duration::from_secs(24 * 3600);
/// After a failed fetch, the next one waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// The version page is a few hundred KiB.
const MAX_PAGE: usize = 4 * 1024 * 1024;

/// Where the version in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSource {
    /// `connection.client_version` in the config.
    Pinned,
    /// Fetched from web.whatsapp.com within the last day.
    Fetched,
    /// The last version that worked for this account (an older fetch, or a
    /// connect).
    Stored,
    /// Built into walink: no version was ever fetched for this account.
    BuiltIn,
}

impl VersionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pinned => "pinned",
            Self::Fetched => "fetched",
            Self::Stored => "stored",
            Self::BuiltIn => "built_in",
        }
    }
}

/// What `status` shows about the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    pub version: (u32, u32, u32),
    pub source: VersionSource,
    /// Why the last fetch failed, until one succeeds.
    pub fetch_error: Option<String>,
}

impl VersionStatus {
    pub fn version_string(&self) -> String {
        let (p, s, t) = self.version;
        format!("{p}.{s}.{t}")
    }
}

#[derive(Default)]
struct Progress {
    /// When the last fetch was attempted in this process.
    attempted: Option<Instant>,
    fetching: bool,
    /// The error last logged, so a failure that repeats is logged once.
    logged: Option<String>,
    status: Option<VersionStatus>,
}

/// One account's version policy.
#[derive(Clone)]
pub struct VersionKeeper {
    inner: Arc<Inner>,
}

struct Inner {
    account: String,
    store: Arc<SledBackend>,
    http: HttpClient,
    pinned: Option<(u32, u32, u32)>,
    progress: Mutex<Progress>,
    on_change: Arc<dyn Fn(VersionStatus) + Send + Sync>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fetches and parses the version page through `http`.
pub async fn fetch(http: &HttpClient) -> Result<(u32, u32, u32), String> {
    let request = Request {
        method: "GET".into(),
        url: SW_URL.into(),
        headers: vec![
            ("sec-fetch-site".into(), "none".into()),
            (
                "user-agent".into(),
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36".into(),
            ),
        ],
    };
    let why = |e: String| {
        format!(
            "could not fetch the WhatsApp Web version from web.whatsapp.com {}: {e}",
            http.route()
        )
    };
    let response = http
        .send(&request, RequestBody::Empty)
        .await
        .map_err(|e| why(e.to_string()))?;
    let status = response.status;
    let body = response
        .body
        .to_vec(MAX_PAGE)
        .await
        .map_err(|e| why(e.to_string()))?;
    if !(200..300).contains(&status) {
        return Err(why(format!("{SW_URL} answered HTTP {status}")));
    }
    wacore::version::parse_sw_js(&String::from_utf8_lossy(&body))
        .ok_or_else(|| why(format!("{SW_URL} names no client_revision")))
}

impl VersionKeeper {
    pub fn new(
        account: &str,
        store: Arc<SledBackend>,
        http: HttpClient,
        pinned: Option<(u32, u32, u32)>,
        on_change: Arc<dyn Fn(VersionStatus) + Send + Sync>,
    ) -> VersionKeeper {
        VersionKeeper {
            inner: Arc::new(Inner {
                account: account.to_owned(),
                store,
                http,
                pinned,
                progress: Mutex::default(),
                on_change,
            }),
        }
    }

    /// Decides the version for the next connect and sets it on the device.
    /// Waits for a fetch only when the account has no version at all.
    pub async fn prepare(&self, persistence: &PersistenceManager) {
        if let Some(version) = self.inner.pinned {
            self.inner.set_status(version, VersionSource::Pinned);
            return;
        }
        let stored = self.inner.stored();
        let version = match stored {
            Some(stored) => {
                if self.inner.due(Some(&stored)) {
                    let inner = self.inner.clone();
                    tokio::spawn(async move { inner.refresh().await });
                }
                self.inner.set_status(stored.version, source_of(&stored));
                stored.version
            }
            None => {
                if self.inner.due(None) {
                    self.inner.refresh().await;
                }
                match self.inner.stored() {
                    Some(fetched) => {
                        self.inner.set_status(fetched.version, source_of(&fetched));
                        fetched.version
                    }
                    None => {
                        self.inner.set_status(BUILT_IN, VersionSource::BuiltIn);
                        BUILT_IN
                    }
                }
            }
        };
        persistence
            .process_command(DeviceCommand::SetAppVersion(version))
            .await;
    }

    /// The connect with the version in use got through: keep it as the one
    /// that works, if nothing better is stored.
    pub fn worked(&self) {
        let Some(status) = self.inner.lock().status.clone() else {
            return;
        };
        if status.source != VersionSource::BuiltIn {
            return;
        }
        let record = WebVersion {
            version: status.version,
            fetched_at_ms: 0,
        };
        if let Err(e) = self.inner.store.set_web_version(&record) {
            tracing::warn!(account = %self.inner.account, error = %e, "cannot keep the WhatsApp Web version: {e}");
        }
    }
}

fn source_of(stored: &WebVersion) -> VersionSource {
    let age = Duration::from_millis(now_ms().saturating_sub(stored.fetched_at_ms));
    if stored.fetched_at_ms > 0 && age < FRESH_FOR {
        VersionSource::Fetched
    } else {
        VersionSource::Stored
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stored(&self) -> Option<WebVersion> {
        match self.store.web_version() {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(account = %self.account, error = %e, "cannot read the stored WhatsApp Web version: {e}");
                None
            }
        }
    }

    fn set_status(&self, version: (u32, u32, u32), source: VersionSource) {
        let mut progress = self.lock();
        let status = VersionStatus {
            version,
            source,
            fetch_error: progress.logged.clone(),
        };
        progress.status = Some(status.clone());
        drop(progress);
        (self.on_change)(status);
    }

    /// Whether a fetch should start now: once per process, then when the
    /// stored one is a day old, and never sooner than RETRY_AFTER after a
    /// failure.
    fn due(&self, stored: Option<&WebVersion>) -> bool {
        let progress = self.lock();
        if progress.fetching {
            return false;
        }
        match progress.attempted {
            None => true,
            Some(at) if progress.logged.is_some() => at.elapsed() >= RETRY_AFTER,
            Some(_) => stored.is_none_or(|s| source_of(s) != VersionSource::Fetched),
        }
    }

    async fn refresh(&self) {
        {
            let mut progress = self.lock();
            if progress.fetching {
                return;
            }
            progress.fetching = true;
            progress.attempted = Some(Instant::now());
        }
        let result = fetch(&self.http).await;
        let mut progress = self.lock();
        progress.fetching = false;
        match result {
            Ok(version) => {
                let record = WebVersion {
                    version,
                    fetched_at_ms: now_ms(),
                };
                if let Err(e) = self.store.set_web_version(&record) {
                    tracing::warn!(account = %self.account, error = %e, "cannot keep the WhatsApp Web version: {e}");
                }
                let (p, s, t) = version;
                if progress.logged.take().is_some() {
                    tracing::info!(account = %self.account, event = "version", "fetched the WhatsApp Web version {p}.{s}.{t} again");
                } else {
                    tracing::debug!(account = %self.account, "WhatsApp Web version {p}.{s}.{t}");
                }
                if let Some(status) = progress.status.as_mut() {
                    status.fetch_error = None;
                }
            }
            Err(e) => {
                if progress.logged.as_deref() != Some(e.as_str()) {
                    let using = match self.store.web_version().ok().flatten() {
                        Some(_) => "the last version that worked",
                        None => "the version built into walink",
                    };
                    tracing::warn!(account = %self.account, event = "version", reason = %e, "{e}; connecting with {using}, trying again later");
                }
                if let Some(status) = progress.status.as_mut() {
                    status.fetch_error = Some(e.clone());
                }
                progress.logged = Some(e);
            }
        }
        let status = progress.status.clone();
        drop(progress);
        if let Some(status) = status {
            (self.on_change)(status);
        }
    }
}
