//! Process life: startup, config load and reload, signals, shutdown,
//! systemd notification and watchdog.

pub mod accounts;
pub mod backups;
mod conversations;
mod errors;
pub mod fdlimit;
mod fetches;
mod files;
pub mod handler;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod recovery;
mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DaemonConfig, Mode};
use crate::ipc;
use accounts::Accounts;
use handler::DaemonHandler;

/// SIGTERM to exit, whatever the disk does (systemd's stop timeout is
/// longer; a test holds walinkd to 5 s).
const STOP_WITHIN: Duration = Duration::from_secs(4);
/// How often a start on a full disk tries to open the stores again.
const SPACE_RETRY: Duration = Duration::from_secs(2);
/// How often the STATUS= line is refreshed when it changed.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// How often walinkd hands the memory it freed back to the system. glibc
/// keeps freed chunks in the middle of its heap for later allocations, and
/// only `malloc_trim` returns them: at the end of a 10-minute chaos run
/// (seed 1050956892) a 12-second-old walinkd held 31.1 MiB, of which a trim
/// returned 7.4 MiB. A trim walks the free chunks under the arena's lock;
/// every 10 s that is a small cost.
const RELEASE_MEMORY_EVERY: Duration = Duration::from_secs(10);

/// Loads the config at `path`. A missing file is fine only in user mode and
/// only when it was not named explicitly: defaults, no account.
pub fn load_config(path: &Path, explicit: bool, mode: Mode) -> anyhow::Result<Config> {
    if !explicit && mode == Mode::User && !path.exists() {
        return Ok(Config::defaults(mode)?);
    }
    Ok(Config::load_for(path, mode)?)
}

/// Where the sled database of live state lives inside the state directory.
pub fn state_db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state")
}

/// Creates the state directory readable by its owner only: it holds the keys
/// of every linked account. An existing one keeps its mode (systemd's
/// StateDirectoryMode= or the administrator decides).
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| {
            format!(
                "cannot create the state directory {}; check daemon.state_dir and its parent's permissions",
                dir.display()
            )
        })
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config_path: PathBuf, explicit: bool, mode: Mode) -> anyhow::Result<()> {
    // Before anything can serve a client: a SIGTERM or SIGHUP that arrives
    // while starting is then handled once the loop runs, instead of killing
    // the process with the default action.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let config = load_config(&config_path, explicit, mode)?;
    logging::init(config.daemon.log_target);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %config_path.display(), "walinkd {} starting", env!("CARGO_PKG_VERSION"));
    fdlimit::check(config.accounts.len());

    create_private_dir(&config.daemon.state_dir)?;
    let sealer = recovery::load_key(&config.storage)?;
    let stores = loop {
        match recovery::open_stores(
            &config,
            &state_db_path(&config.daemon.state_dir),
            sealer.clone(),
        )
        .await
        {
            Ok(stores) => break stores,
            // Started on a full disk: nothing is damaged, so wait for space
            // (and for SIGTERM) rather than exit and be restarted in a loop.
            Err(e) if recovery::is_disk_full(&e) => {
                tracing::error!(event = "storage_fault", reason = %format!("{e:#}"), "disk full: cannot open the stores yet ({e:#}); retrying every {}s", SPACE_RETRY.as_secs());
                notify::status(&format!(
                    "disk full: waiting for space in {}",
                    config.daemon.state_dir.display()
                ));
                tokio::select! {
                    _ = tokio::time::sleep(SPACE_RETRY) => {}
                    _ = term.recv() => return Ok(()),
                    _ = int.recv() => return Ok(()),
                }
            }
            Err(e) => return Err(e),
        }
    };
    let accounts = Arc::new(Accounts::start(stores, &config)?);
    let (listener, bound_socket) = match ipc::systemd_listener()
        .context("cannot use the socket passed by systemd")?
    {
        Some(listener) => (listener, None),
        None => {
            let listener = ipc::bind(&config.daemon.socket, config.daemon.socket_group.as_deref())?;
            (listener, Some(config.daemon.socket.clone()))
        }
    };
    let shutdown = CancellationToken::new();
    if let Some(addr) = config.daemon.metrics_listen {
        let listener = metrics::bind(addr).await?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(event = "metrics", listen = %bound, "serving Prometheus metrics at http://{bound}/metrics");
        tokio::spawn(metrics::serve(listener, accounts.clone(), shutdown.clone()));
    }
    let handler = Arc::new(DaemonHandler::new(
        accounts.clone(),
        &config.daemon.state_dir,
    ));
    let server = tokio::spawn(ipc::serve(listener, handler, shutdown.clone()));
    // In the background: a slow DNS or a black-holed route must not delay
    // readiness; the verdict lands in health and the log when it is in.
    let start_check = {
        let accounts = accounts.clone();
        tokio::spawn(async move { accounts.check_network().await })
    };

    let mut status_line = accounts.summary_line().await;
    notify::ready(&status_line);
    tracing::info!(
        event = "started",
        socket = %config.daemon.socket.display(),
        accounts = config.accounts.len(),
        "walinkd ready: {status_line}"
    );

    let watchdog_every = notify::watchdog_interval();
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    // After a stall (a slow reload), one ping, not a burst of catch-up pings
    // that would hide how long the loop was stuck.
    watchdog.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut release_tick = tokio::time::interval(RELEASE_MEMORY_EVERY);
    release_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&config_path, explicit, mode, &config.daemon, &accounts).await,
            _ = watchdog.tick(), if watchdog_every.is_some() => {
                let deadline = watchdog_every.unwrap_or_default() / 2;
                if accounts.all_responsive(deadline).await {
                    notify::watchdog();
                } else {
                    tracing::error!(event = "wedged", "an account supervisor did not answer; withholding the watchdog ping");
                }
            }
            _ = release_tick.tick() => {
                tokio::task::spawn_blocking(crate::store::release_freed_now_and_then);
            }
            _ = status_tick.tick() => {
                let line = accounts.summary_line().await;
                if line != status_line {
                    notify::status(&line);
                    status_line = line;
                }
            }
        }
    }

    tracing::info!(event = "stopping", "walinkd stopping");
    notify::stopping();
    shutdown.cancel();
    start_check.abort();
    accounts.stop_all(STOP_WITHIN).await;
    let _ = server.await;
    if let Some(path) = bound_socket {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// SIGHUP: applies a new config, or keeps the running one when it is bad.
async fn reload(
    path: &Path,
    explicit: bool,
    mode: Mode,
    running: &DaemonConfig,
    accounts: &Accounts,
) {
    notify::reloading();
    match load_config(path, explicit, mode) {
        Ok(config) => {
            fdlimit::check(config.accounts.len());
            reloaded(&config, running, accounts.reload(&config).await)
        }
        Err(e) => tracing::error!(
            event = "reload_failed",
            reason = %e,
            "new config rejected, keeping the running one: {e:#}"
        ),
    }
    notify::ready(&accounts.summary_line().await);
}

/// Logs what a reload did.
fn reloaded(
    config: &Config,
    running: &DaemonConfig,
    result: Result<accounts::ReloadSummary, crate::store::StoreError>,
) {
    match result {
        Ok(summary) if config.daemon != *running => {
            // The socket and state are open; moving them under a running
            // daemon would strand its clients and sessions.
            tracing::warn!(
                event = "reloaded",
                "config reloaded: added {:?}, removed {:?}, restarted {:?}; \
                 [daemon] changes take effect at the next start (systemctl restart walink)",
                summary.added,
                summary.removed,
                summary.restarted
            )
        }
        Ok(summary) => tracing::info!(
            event = "reloaded",
            "config reloaded: added {:?}, removed {:?}, restarted {:?}",
            summary.added,
            summary.removed,
            summary.restarted
        ),
        Err(e) => {
            tracing::error!(event = "reload_failed", error = %e, "config reload failed: {e}")
        }
    }
}
