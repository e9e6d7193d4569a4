//! Group commit for the message stores: writers that each need "my write is
//! on disk" share one flush instead of queueing one fsync apiece.
//!
//! A writer takes a ticket after its write is applied, then waits its turn
//! for the flush lock. Whoever holds the lock flushes everything written so
//! far, which covers every ticket issued before the flush began; the writers
//! queued behind it find their ticket covered and return without touching
//! the disk. So a burst of N concurrent enqueues costs about two fsyncs,
//! not N, and each one still returns only once its own write is durable.

use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by every [`super::MessageStore`] of one database: sled's flush
/// covers all its trees at once.
#[derive(Debug)]
pub(crate) struct GroupFlush {
    db: sled::Db,
    /// Tickets handed out so far.
    issued: AtomicU64,
    /// The highest ticket known to be durable. Held across a flush, so
    /// writers arriving meanwhile wait for (and are covered by) the next one.
    durable: tokio::sync::Mutex<u64>,
}

impl GroupFlush {
    pub(crate) fn new(db: sled::Db) -> Self {
        Self {
            db,
            issued: AtomicU64::new(0),
            durable: tokio::sync::Mutex::new(0),
        }
    }

    /// Returns once every write the caller applied before calling is on disk.
    pub(crate) async fn flush(&self) -> Result<(), sled::Error> {
        let ticket = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
        let mut durable = self.durable.lock().await;
        if *durable >= ticket {
            return Ok(());
        }
        // Every ticket up to here was taken after its write was applied, so
        // this flush covers them all.
        let covers = self.issued.load(Ordering::Acquire);
        let db = self.db.clone();
        // sled's `flush_async` can hang when several run at once, and the
        // blocking flush must stay off the async workers.
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| sled::Error::ReportableBug(format!("the flush task failed: {e}")))??;
        *durable = covers;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_flushes_all_return_and_cover_their_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let flusher = Arc::new(GroupFlush::new(db.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0u32..64 {
            let db = db.clone();
            let flusher = flusher.clone();
            tasks.spawn(async move {
                db.insert(i.to_be_bytes(), &[1]).unwrap();
                flusher.flush().await.unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(flusher.issued.load(Ordering::Acquire), 64);
        assert_eq!(
            *flusher.durable.lock().await,
            64,
            "every ticket is covered by a flush once its caller returned"
        );
    }
}
