//! `messages.db`: the SQLite database every account's messages live in.
//!
//! One writer thread owns the only writing connection. Writes are queued to
//! it as jobs; it takes every job waiting, runs them in one transaction
//! (each in a savepoint of its own, so one failing job does not undo the
//! others), commits, and only then answers each. So a burst of concurrent
//! sends shares one commit and one fsync, and a `send` is answered only
//! once its message is on disk. Reads run on a small pool of read-only
//! connections under `spawn_blocking`; in WAL mode they never wait for the
//! writer. Nothing here blocks a tokio worker.
//!
//! Durability: `synchronous=FULL` for jobs that promise it (an enqueue, a
//! received batch), so their commit fsyncs the WAL; `NORMAL` for status
//! changes, which survive a kill -9 (the WAL is in the page cache) and at
//! worst repeat a send under the same id after a power cut.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::{Counts, schema};
use crate::store::error::{Fault, StoreError};

/// While a storage fault is set, the writer tries a tiny durable write this
/// often, so the fault clears by itself once the disk takes writes again.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Jobs taken into one transaction at most; a longer queue waits for the
/// next commit.
const MAX_BATCH: usize = 512;
/// Read-only connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;
/// SQLite's own wait for a lock (the writer checkpointing) before `BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pages of the WAL after which SQLite checkpoints it into the database.
const WAL_AUTOCHECKPOINT: u32 = 1000;
/// Prepared statements each connection keeps: the writer runs a few dozen
/// different ones, and one evicted is parsed again at its next run.
const STATEMENTS: usize = 64;
/// SQLite's page cache per connection, in KiB (negative `cache_size`).
const CACHE_KIB: i64 = 2048;

/// How a job's work went: the writer rolls back a failed job's savepoint.
pub(super) type JobResult = Result<Box<dyn FnOnce(Result<(), StoreError>) + Send>, ()>;

/// A job's work: run in the open transaction, or told why it cannot be.
type Work = Box<dyn FnOnce(Result<&Connection, StoreError>) -> JobResult + Send>;

/// A queued write.
struct Job {
    durable: bool,
    run: Work,
}

/// The storage fault the last write hit, until a write succeeds again.
#[derive(Debug, Default)]
struct FaultState {
    current: Mutex<Option<(Fault, String)>>,
}

impl FaultState {
    fn set(&self, fault: Fault, reason: String) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().map(|(_, r)| r) != Some(&reason) {
            tracing::error!(event = "storage_fault", reason = %reason, "{reason}");
        }
        *current = Some((fault, reason));
    }

    fn clear(&self) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, reason)) = current.take() {
            tracing::info!(
                event = "storage_recovered",
                "the message database takes writes again (was: {reason})"
            );
        }
    }

    fn get(&self) -> Option<(Fault, String)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn is_set(&self) -> bool {
        self.get().is_some()
    }
}

/// The message database of one state directory.
pub struct MessageDb {
    path: PathBuf,
    key: Option<String>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    fault: Arc<FaultState>,
    /// Each account's outbox counts, shared by all its stores.
    counts: Mutex<HashMap<String, Arc<Counts>>>,
    /// What the last [`Self::validate`] found, until one passes.
    damage: Mutex<Option<String>>,
}

impl std::fmt::Debug for MessageDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDb")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Where the message database lives inside the state directory.
pub fn messages_db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("messages.db")
}

impl MessageDb {
    /// Opens (or creates, mode 0600) the database at `path`, brings its
    /// schema up to date and runs the full `integrity_check`. `key` (hex,
    /// 32 bytes) opens an encrypted database.
    pub fn open(path: &Path, key: Option<String>) -> Result<Arc<MessageDb>, StoreError> {
        let err = |op: &'static str| move |e: rusqlite::Error| sqlite_error(path, op, &e);
        probe_access(path)?;
        let conn = open_connection(path, key.as_deref(), false).map_err(err("open"))?;
        schema::migrate(&conn).map_err(err("bring its schema up to date"))?;
        check(&conn, path, true)?;
        let fault = Arc::new(FaultState::default());
        let (jobs, queue) = mpsc::channel();
        let writer = {
            let fault = fault.clone();
            let owned = path.to_owned();
            std::thread::Builder::new()
                .name("walink-messages".into())
                .spawn(move || write_loop(conn, &owned, &queue, &fault))
                .map_err(|e| io_error(path, "start its writer thread", &e))?
        };
        Ok(Arc::new(MessageDb {
            path: path.to_owned(),
            key,
            jobs: Mutex::new(Some(jobs)),
            writer: Mutex::new(Some(writer)),
            readers: Mutex::new(Vec::new()),
            fault,
            counts: Mutex::new(HashMap::new()),
            damage: Mutex::new(None),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encrypts the plain database at `path` with `key` (a key was just
    /// configured for a state directory that had none): copied into a new
    /// SQLCipher file that then takes its place. Nothing to do when there
    /// is no database yet.
    pub fn encrypt_in_place(path: &Path, key: &str) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        if !path.exists() {
            return Ok(());
        }
        probe_access(path)?;
        let err = |op: &'static str| move |e: rusqlite::Error| sqlite_error(path, op, &e);
        let sealed = PathBuf::from(format!("{}.encrypting", path.display()));
        match std::fs::remove_file(&sealed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&sealed, "remove a leftover copy", &e)),
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&sealed)
            .map_err(|e| io_error(&sealed, "create", &e))?;
        {
            let conn = open_connection(path, None, false).map_err(err("open"))?;
            let version: u32 = conn
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(err("read its schema version"))?;
            conn.execute(
                "ATTACH DATABASE ?1 AS sealed KEY ?2",
                rusqlite::params![sealed.to_string_lossy(), format!("x'{key}'")],
            )
            .map_err(err("attach the encrypted copy"))?;
            conn.query_row("SELECT sqlcipher_export('sealed')", [], |_| Ok(()))
                .map_err(err("copy itself into the encrypted file"))?;
            conn.execute_batch(&format!(
                "PRAGMA sealed.user_version = {version}; DETACH DATABASE sealed;"
            ))
            .map_err(err("finish the encrypted copy"))?;
        }
        std::fs::File::open(&sealed)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error(&sealed, "sync", &e))?;
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&side) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&side, "remove", &e)),
            }
        }
        std::fs::rename(&sealed, path).map_err(|e| io_error(path, "replace", &e))?;
        tracing::info!(path = %path.display(), "encrypted the message database with the configured key");
        Ok(())
    }

    /// The storage fault that stops writes right now, as a health reason
    /// (`disk full: …`), until a write succeeds again; else what the last
    /// periodic check found damaged.
    pub fn fault(&self) -> Option<String> {
        self.fault.get().map(|(_, reason)| reason).or_else(|| {
            self.damage
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    /// Runs `work` in the writer's next transaction and returns its result
    /// once that transaction is committed (fsynced when `durable`).
    pub(super) async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.write_behind(durable, work, move |result| {
            let _ = tx.send(result);
        })?;
        rx.await.unwrap_or_else(|_| Err(self.closed()))
    }

    /// Queues `work` for the writer's next transaction and returns at
    /// once; `done` gets its result once that transaction is committed (or
    /// why it was not). Jobs run in the order they were queued, so a write
    /// queued after this one sees what it wrote.
    pub(super) fn write_behind<T: Send + 'static>(
        &self,
        durable: bool,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        done: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let run = Box::new(move |conn: Result<&Connection, StoreError>| -> JobResult {
            match conn.and_then(work) {
                Ok(value) => Ok(Box::new(move |committed: Result<(), StoreError>| {
                    done(committed.map(|()| value));
                })),
                Err(e) => {
                    done(Err(e));
                    Err(())
                }
            }
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|jobs| jobs.send(Job { durable, run }).is_ok());
        if sent { Ok(()) } else { Err(self.closed()) }
    }

    fn closed(&self) -> StoreError {
        StoreError::Messages {
            path: self.path.clone(),
            op: "take a write",
            fault: Fault::Other,
            detail: "walinkd is shutting down".into(),
        }
    }

    /// The counts of `account`, counted by `init` the first time.
    pub(super) fn counts_of(
        &self,
        account: &str,
        init: impl FnOnce(&Connection) -> rusqlite::Result<Counts>,
    ) -> Result<Arc<Counts>, StoreError> {
        let mut all = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(counts) = all.get(account) {
            return Ok(counts.clone());
        }
        let path = self.path.clone();
        let counts = Arc::new(self.read_blocking(|conn| {
            init(conn).map_err(|e| sqlite_error(&path, "count messages", &e))
        })?);
        all.insert(account.to_owned(), counts.clone());
        Ok(counts)
    }

    /// Runs `work` on a read connection, off the async workers.
    pub(super) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_blocking(work))
            .await
            .map_err(|e| StoreError::Messages {
                path: self.path.clone(),
                op: "read",
                fault: Fault::Other,
                detail: format!("the read task failed: {e}"),
            })?
    }

    pub(super) fn read_blocking<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_connection(&self.path, self.key.as_deref(), true)
                .map_err(|e| sqlite_error(&self.path, "open for reading", &e))?,
        };
        let result = work(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }

    /// Checks the database: `full` reads every page (`integrity_check`,
    /// at start), otherwise `quick_check` bounded to the first problems,
    /// cheap enough to run every minute.
    /// A check that finds damage is kept for health until one passes; a
    /// check that cannot run (a full disk) is not damage and changes nothing.
    pub async fn validate(self: &Arc<Self>, full: bool) -> Result<(), StoreError> {
        let path = self.path.clone();
        let result = self.read(move |conn| check(conn, &path, full)).await;
        let mut damage = self.damage.lock().unwrap_or_else(PoisonError::into_inner);
        match &result {
            Ok(()) => *damage = None,
            Err(e) if e.fault() == Fault::Damaged => {
                if damage.is_none() {
                    tracing::error!(event = "validation_failed", error = %e, "{e}");
                }
                *damage = Some(e.to_string());
            }
            Err(_) => {}
        }
        result
    }

    /// Stops the writer after the jobs already queued, waiting at most
    /// `deadline`: a disk that hangs must not hold up the exit.
    pub fn close(&self, deadline: Duration) {
        // Before the writer: the last connection to close checkpoints the
        // WAL into the database, and a read-only one cannot.
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        drop(
            self.jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let Some(writer) = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = writer.join();
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(deadline).is_err() {
            tracing::error!(path = %self.path.display(), "the message database did not close within {deadline:?}; giving up on it");
        }
    }
}

impl Drop for MessageDb {
    fn drop(&mut self) {
        self.close(Duration::from_secs(2));
    }
}

fn open_connection(
    path: &Path,
    key: Option<&str>,
    read_only: bool,
) -> Result<Connection, rusqlite::Error> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    if let Some(key) = key {
        conn.execute_batch(&format!("PRAGMA key = \"x'{key}'\";"))?;
    }
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Plans that do not depend on bound values: otherwise SQLite prepares
    // a statement again each time a value it planned with (a `LIMIT ?`,
    // a term a partial index's condition is checked against) is bound
    // anew, and that parsing was a tenth of walinkd's CPU per send.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    if !read_only {
        // The first statement that reads the file: a wrong key fails here.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    Ok(conn)
}

/// SQLite says only "unable to open database file" when it cannot: open
/// the file (and its directory) ourselves first, so the error names the
/// real cause, EACCES or ENOSPC, never "damaged". Creates the file with
/// mode 0600 when missing.
fn probe_access(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error, op: &'static str| io_error(path, op, &e);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(e, "open"))?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&side)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&side, "open", &e)),
        }
    }
    Ok(())
}

fn io_error(path: &Path, op: &'static str, e: &std::io::Error) -> StoreError {
    StoreError::Messages {
        path: path.to_owned(),
        op,
        fault: Fault::of_io(e),
        detail: e.to_string(),
    }
}

pub(super) fn sqlite_error(path: &Path, op: &'static str, e: &rusqlite::Error) -> StoreError {
    StoreError::Messages {
        path: path.to_owned(),
        op,
        fault: Fault::of_sqlite(e),
        detail: e.to_string(),
    }
}

fn check(conn: &Connection, path: &Path, full: bool) -> Result<(), StoreError> {
    // `quick_check(N)` skips the index-content comparison, the part that
    // reads every row; N bounds how many problems are listed.
    let pragma = if full {
        "PRAGMA integrity_check(10)"
    } else {
        "PRAGMA quick_check(10)"
    };
    let op = if full {
        "pass its integrity check"
    } else {
        "pass its quick check"
    };
    let rows: Vec<String> = conn
        .prepare(pragma)
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(|e| sqlite_error(path, op, &e))?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Messages {
        path: path.to_owned(),
        op,
        fault: Fault::Damaged,
        detail: rows.join("; "),
    })
}

fn write_loop(conn: Connection, path: &Path, queue: &mpsc::Receiver<Job>, fault: &FaultState) {
    // Started on a full disk: health says so before the first send fails.
    probe(&conn, path, fault);
    loop {
        let first = if fault.is_set() {
            match queue.recv_timeout(PROBE_EVERY) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    probe(&conn, path, fault);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match queue.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&conn, path, batch, fault);
    }
    // A clean stop leaves everything in the database file itself.
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(path = %path.display(), error = %e, "checkpointing the message database at exit failed: {e}");
    }
}

fn commit_batch(conn: &Connection, path: &Path, batch: Vec<Job>, fault: &FaultState) {
    let durable = batch.iter().any(|job| job.durable);
    let synchronous = if durable {
        "PRAGMA synchronous = FULL"
    } else {
        "PRAGMA synchronous = NORMAL"
    };
    let began = run(conn, synchronous).and_then(|()| run(conn, "BEGIN IMMEDIATE"));
    if let Err(e) = began {
        let err = sqlite_error(path, "begin a transaction", &e);
        note_fault(fault, &err);
        for job in batch {
            let _ = (job.run)(Err(copy_error(&err)));
        }
        return;
    }
    let mut finishers = Vec::with_capacity(batch.len());
    for job in batch {
        if let Ok(done) = run_job(conn, path, job) {
            finishers.push(done);
        }
    }
    match run(conn, "COMMIT") {
        Ok(()) => {
            if durable {
                fault.clear();
            }
            for done in finishers {
                done(Ok(()));
            }
        }
        Err(e) => {
            let err = sqlite_error(path, "commit", &e);
            note_fault(fault, &err);
            let _ = run(conn, "ROLLBACK");
            for done in finishers {
                done(Err(copy_error(&err)));
            }
        }
    }
}

/// One job inside the open transaction, in a savepoint of its own: a job
/// that fails (a full disk mid-batch) is undone alone and has answered its
/// caller already.
fn run_job(conn: &Connection, path: &Path, job: Job) -> JobResult {
    if let Err(e) = run(conn, "SAVEPOINT job") {
        let _ = (job.run)(Err(sqlite_error(path, "open a savepoint", &e)));
        return Err(());
    }
    let result = (job.run)(Ok(conn));
    if result.is_err() {
        let _ = run(conn, "ROLLBACK TO job");
    }
    let _ = run(conn, "RELEASE job");
    result
}

/// Runs a statement the writer runs around every job and batch, prepared
/// once: parsing them anew was a few percent of walinkd's CPU per send.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn probe(conn: &Connection, path: &Path, fault: &FaultState) {
    let wrote = conn
        .pragma_update(None, "synchronous", "FULL")
        .and_then(|()| {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('probe', strftime('%s','now')) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [],
            )
        });
    match wrote {
        Ok(_) => fault.clear(),
        Err(e) => note_fault(fault, &sqlite_error(path, "write", &e)),
    }
}

fn note_fault(fault: &FaultState, err: &StoreError) {
    let kind = err.fault();
    if kind.is_environmental() {
        fault.set(kind, err.to_string());
    } else {
        tracing::error!(error = %err, "{err}");
    }
}

fn copy_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::Messages {
            path,
            op,
            fault,
            detail,
        } => StoreError::Messages {
            path: path.clone(),
            op,
            fault: *fault,
            detail: detail.clone(),
        },
        other => StoreError::Messages {
            path: PathBuf::new(),
            op: "commit",
            fault: other.fault(),
            detail: other.to_string(),
        },
    }
}
