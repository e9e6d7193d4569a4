//! systemd readiness, status and watchdog notifications. Every call is a
//! no-op when `NOTIFY_SOCKET` is unset (not started by systemd), so the
//! daemon runs the same way by hand.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The socket is bound and accounts are loaded (not: connected to WhatsApp,
/// which can take long and is reported through the status line instead).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Half the watchdog timeout systemd asked for, if it asked: pinging at
/// half the deadline leaves room for one late tick.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}
