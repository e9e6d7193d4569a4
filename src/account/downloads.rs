//! Files fetched as they arrive: the inbox names each new message whose
//! file the account's `auto_download` wants, and this fetches it off the
//! receiving path (a slow or failing host never holds a message up), over
//! whatever connection the account has by then. A fetch that fails is tried
//! again a few times, then left for `walink media`.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use crate::messages::MessageView;
use crate::messages::media::{FetchError, MediaSettings, save_into};
use crate::store::MessageStore;
use crate::wa::Session;

/// Pauses before the second, third and fourth try; then it is given up.
const RETRY_AFTER: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
];
/// Fetches at once per account.
const PARALLEL: usize = 2;

/// One account's automatic downloads.
pub(crate) struct Downloads {
    settings: MediaSettings,
    /// The account's client while it has one.
    session: Arc<Mutex<Weak<Session>>>,
    wanted: mpsc::UnboundedSender<String>,
}

impl Downloads {
    /// Starts the fetcher; it ends, with the fetches under way, when the
    /// returned task is aborted.
    pub(crate) fn spawn(
        account: String,
        store: MessageStore,
        settings: MediaSettings,
    ) -> (Arc<Downloads>, JoinHandle<()>) {
        let (wanted, rx) = mpsc::unbounded_channel();
        let session = Arc::new(Mutex::new(Weak::new()));
        let fetcher = Fetcher {
            account,
            store,
            dir: settings.dir.clone(),
            session: session.clone(),
        };
        let task = tokio::spawn(fetcher.run(rx));
        let downloads = Downloads {
            settings,
            session,
            wanted,
        };
        (Arc::new(downloads), task)
    }

    /// The client fetches go through from now on.
    pub(crate) fn use_session(&self, session: &Arc<Session>) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(session);
    }

    /// Queues the file of a message just stored, if the config wants it.
    pub(crate) fn consider(&self, message: &MessageView) {
        let Some(auto) = &self.settings.auto else {
            return;
        };
        let Some(media) = &message.media else {
            return;
        };
        if auto.wants(&message.kind, media.size) {
            let _ = self.wanted.send(message.id.clone());
        }
    }
}

struct Fetcher {
    account: String,
    store: MessageStore,
    dir: std::path::PathBuf,
    session: Arc<Mutex<Weak<Session>>>,
}

impl Fetcher {
    async fn run(self, mut wanted: mpsc::UnboundedReceiver<String>) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(PARALLEL));
        // Dropped with this task, which aborts every fetch in it.
        let mut fetches = JoinSet::new();
        loop {
            tokio::select! {
                id = wanted.recv() => {
                    let Some(id) = id else { return };
                    let (this, slots) = (this.clone(), slots.clone());
                    fetches.spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        this.fetch(&id).await;
                    });
                }
                Some(_) = fetches.join_next(), if !fetches.is_empty() => {}
            }
        }
    }

    fn connected(&self) -> Option<Arc<Session>> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
            .filter(|s| s.is_connected())
    }

    async fn fetch(&self, id: &str) {
        let account = &self.account;
        for attempt in 0..=RETRY_AFTER.len() {
            let result = match self.connected() {
                Some(session) => save_into(&self.store, &session, id, &self.dir)
                    .await
                    .map_err(|e| (matches!(e, FetchError::UnknownMessage(_)), e.to_string())),
                None => Err((false, "the account is not connected".to_owned())),
            };
            let why = match result {
                Ok(saved) => {
                    tracing::info!(account = %account, id = %id, path = %saved.path.display(), size = saved.size, "saved a received {}", saved.kind);
                    return;
                }
                // Gone since (retention): nothing left to fetch.
                Err((true, _)) => return,
                Err((false, why)) => why,
            };
            match RETRY_AFTER.get(attempt) {
                Some(pause) => {
                    tracing::warn!(account = %account, id = %id, error = %why, "fetching a received file failed; trying again in {}s", pause.as_secs());
                    tokio::time::sleep(*pause).await;
                }
                None => {
                    tracing::warn!(account = %account, id = %id, error = %why, "fetching a received file failed {} times; fetch it with `walink media {account} {id}`", attempt + 1);
                }
            }
        }
    }
}
