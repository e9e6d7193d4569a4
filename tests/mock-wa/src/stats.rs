//! Counters exposed by `GET /admin/stats` and [`crate::MockHandle::stats`],
//! plus a change notification so tests can wait on a condition with a
//! deadline instead of sleeping.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters. Bump with [`Stats::bump`]; read with [`Stats::snapshot`].
        #[derive(Default)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
            changed: Notify,
        }

        /// A point-in-time copy of [`Stats`], serialized as one flat JSON object.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Stats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// WebSocket connections currently open (a gauge).
    connections_open,
    /// TCP connections accepted on the ws listener, refused or not.
    connection_attempts,
    /// Connections turned away while `refuse` was active.
    connections_refused,
    /// Connections between their TCP accept and their login (or end): the
    /// handshakes in flight (a gauge).
    handshakes_in_flight,
    /// The most handshakes in flight at once since the last
    /// [`Stats::reset_handshake_peak`].
    handshakes_in_flight_peak,
    /// Completed full XX handshakes.
    handshakes_xx,
    /// Completed IK handshakes (returning devices).
    handshakes_ik,
    /// Completed XXfallback handshakes (IK that could not be accepted).
    handshakes_xx_fallback,
    /// `<success>` sent to a known device.
    logins,
    /// Logins refused with `<failure>` (unknown device or wrong key).
    login_failures,
    /// Devices paired through a verified `pair-device-sign`.
    pairings,
    /// Keepalive pings answered.
    pings,
    /// `<message>` stanzas received from clients.
    messages_received,
    /// Messages delivered to a client and acknowledged by it (counted by the
    /// stanza handlers, see [`crate::handlers`]).
    messages_acked,
    /// `<receipt>` stanzas sent to clients.
    receipts_sent,
    /// Stanzas received from clients, all kinds.
    stanzas_in,
    /// Stanzas sent to clients, all kinds.
    stanzas_out,
    /// IQs answered with an error because the mock does not know them.
    unknown_iqs,
    /// Connections closed because the client broke the protocol.
    protocol_errors,
    /// Connections closed because the client did not finish the Noise
    /// handshake in time (usually an overloaded or vanished client).
    handshake_timeouts,
    /// Blobs stored by the media host's upload endpoint.
    media_uploads,
    /// Blobs served by the media host.
    media_downloads,
    /// Media host requests refused (bad auth or token, unknown path).
    media_refused,
}

impl Stats {
    /// Adds one to `counter` and wakes anyone waiting on a condition.
    pub fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Subtracts one from a gauge and wakes waiters.
    pub fn drop_one(&self, counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// A handshake starts; [`Stats::drop_one`] on `handshakes_in_flight`
    /// ends it.
    pub fn handshake_started(&self) {
        let now = self.handshakes_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.handshakes_in_flight_peak
            .fetch_max(now, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Starts a new peak from the handshakes in flight now.
    pub fn reset_handshake_peak(&self) {
        let now = self.handshakes_in_flight.load(Ordering::Relaxed);
        self.handshakes_in_flight_peak.store(now, Ordering::Relaxed);
    }

    /// Wakes waiters after a change outside the counters (device registry).
    pub fn touch(&self) {
        self.changed.notify_waiters();
    }

    /// Resolves at the next change; create it before checking the condition.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}
