//! The file-descriptor limit against what the configured accounts need.
//!
//! Each connected account holds its WebSocket, and now and then a second
//! socket (a media transfer, a network check); the stores, the runtime and
//! the IPC clients need a fixed number besides. Many systems start a
//! service with a soft limit of 1,024, which a few hundred accounts exhaust:
//! past it every new connection fails with EMFILE, account after account,
//! with nothing saying why. So walinkd checks at start (and at each reload),
//! raises the soft limit when the hard one allows, and otherwise says what
//! to set.

/// Descriptors walinkd holds whatever the number of accounts: the sled and
/// SQLite files (a writer and a few readers, each with its WAL and shared
/// memory), the runtime's epoll and wakers, the listening socket and the
/// IPC clients of a busy host.
pub const BASE_FDS: u64 = 256;
/// Per account: its WebSocket, a media transfer or network check beside it,
/// and room for a reconnect that opens the next socket before the old one
/// is closed.
pub const PER_ACCOUNT_FDS: u64 = 4;
/// A soft limit raised for a start is raised this far when the hard limit
/// allows, so accounts added by a reload fit too.
const ROOMY: u64 = 65_536;

/// Descriptors `accounts` configured accounts need.
pub fn needed(accounts: usize) -> u64 {
    BASE_FDS + PER_ACCOUNT_FDS * accounts as u64
}

/// What to do about a `soft`/`hard` limit for a need of `needed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The soft limit is enough.
    Enough,
    /// Raise the soft limit to `to` (at most the hard limit).
    Raise { to: u64 },
    /// Even the hard limit is too small: raise the soft limit to it, and
    /// say that `needed` must be set.
    Short { to: u64, needed: u64 },
}

pub fn plan(soft: u64, hard: u64, needed: u64) -> Plan {
    if soft >= needed {
        Plan::Enough
    } else if hard >= needed {
        Plan::Raise {
            to: hard.min(needed.max(ROOMY)),
        }
    } else {
        Plan::Short { to: hard, needed }
    }
}

/// `LimitNOFILE=` worth setting for `needed`: rounded up to a thousand.
pub fn advice(needed: u64) -> u64 {
    needed.div_ceil(1000) * 1000
}

/// Checks `RLIMIT_NOFILE` for `accounts` accounts, raises the soft limit
/// when that is enough, and logs what it did or what to set.
pub fn check(accounts: usize) {
    let need = needed(accounts);
    let Some((soft, hard)) = current() else {
        tracing::warn!(
            event = "fd_limit",
            "cannot read the file-descriptor limit (RLIMIT_NOFILE); {accounts} accounts need about {need}"
        );
        return;
    };
    match plan(soft, hard, need) {
        Plan::Enough => {
            tracing::debug!(
                event = "fd_limit",
                soft,
                hard,
                need,
                "file-descriptor limit is enough"
            );
        }
        Plan::Raise { to } => match raise(to, hard) {
            Ok(()) => tracing::info!(
                event = "fd_limit",
                soft = to,
                hard,
                need,
                "raised the file-descriptor limit from {soft} to {to} for {accounts} accounts"
            ),
            Err(e) => tracing::error!(
                event = "fd_limit",
                soft,
                hard,
                need,
                "{accounts} accounts need about {need} file descriptors, the soft limit is {soft} \
                 and raising it failed ({e}); set LimitNOFILE={} in the unit (`systemctl edit walink`) \
                 or `ulimit -n {}` before starting walinkd, or accounts past the limit fail to connect",
                advice(need),
                advice(need)
            ),
        },
        Plan::Short { to, needed } => {
            let raised = if to > soft {
                raise(to, hard).is_ok()
            } else {
                false
            };
            let now = if raised { to } else { soft };
            tracing::error!(
                event = "fd_limit",
                soft = now,
                hard,
                need = needed,
                "{accounts} accounts need about {needed} file descriptors but walinkd may open only {now} \
                 (hard limit {hard}); set LimitNOFILE={} in the unit (`systemctl edit walink`) or raise \
                 the hard limit (`ulimit -Hn`, limits.conf), or accounts past the limit fail to connect",
                advice(needed)
            );
        }
    }
}

fn current() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some((limit.rlim_cur, limit.rlim_max))
}

fn raise(soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soft_limit_that_covers_the_need_is_left_alone() {
        assert_eq!(plan(1024, 4096, needed(100)), Plan::Enough);
        assert_eq!(plan(needed(10), needed(10), needed(10)), Plan::Enough);
    }

    #[test]
    fn the_soft_limit_is_raised_within_the_hard_limit() {
        // The usual systemd start: soft 1,024, hard 524,288.
        assert_eq!(
            plan(1024, 524_288, needed(5000)),
            Plan::Raise { to: 65_536 }
        );
        // Never past the hard limit.
        assert_eq!(
            plan(1024, needed(1000), needed(1000)),
            Plan::Raise { to: needed(1000) }
        );
        // A need past the roomy default gets what it needs.
        assert_eq!(
            plan(1024, 1 << 20, needed(20_000)),
            Plan::Raise { to: needed(20_000) }
        );
    }

    #[test]
    fn a_hard_limit_below_the_need_is_reported_with_what_to_set() {
        assert_eq!(
            plan(1024, 4096, needed(5000)),
            Plan::Short {
                to: 4096,
                needed: needed(5000)
            }
        );
        assert_eq!(advice(needed(5000)), 21_000);
        assert_eq!(advice(1000), 1000);
    }
}
