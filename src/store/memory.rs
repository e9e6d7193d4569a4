//! Giving memory the store let go of back to the system.
//!
//! What a closed sled database held is not freed when it closes: sled
//! frees pages through crossbeam's epoch collector, which defers each drop
//! to a thread-local bag that is only collected when threads pin again.
//! Left alone, a closed backup database stayed in walinkd's heap for
//! minutes. Then glibc keeps what was freed for later allocations and never
//! returns a hole in the middle of its heap by itself.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pins the epoch often enough for it to advance past every deferred drop
/// (two advances), collecting this thread's and the global garbage.
const EPOCH_FLUSHES: usize = 8;

/// Frees sled's deferred garbage and returns free heap pages to the kernel.
pub(crate) fn release_freed() {
    for _ in 0..EPOCH_FLUSHES {
        sled::pin().flush();
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks;
    // it takes no pointer and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The shortest time between two [`release_freed_now_and_then`] releases.
const RELEASE_EVERY: Duration = Duration::from_secs(5);

/// [`release_freed`], unless it ran less than [`RELEASE_EVERY`] ago: for
/// callers that run for every account in turn (validation), where a release
/// each time would cost thousands a minute at scale, and the garbage of one
/// account's pass is small, and for the daemon's periodic release.
pub fn release_freed_now_and_then() {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < RELEASE_EVERY) {
            return;
        }
        *last = Some(Instant::now());
    }
    release_freed();
}
