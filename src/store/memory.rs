//! Giving memory the store let go of back to the system.
//!
//! What a closed sled database held is not freed when it closes: sled
//! frees pages through crossbeam's epoch collector, which defers each drop
//! to a thread-local bag that is only collected when threads pin again.
//! Left alone, a closed backup database stayed in walinkd's heap for
//! minutes. Then glibc keeps what was freed for later allocations and never
//! returns a hole in the middle of its heap by itself.

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
