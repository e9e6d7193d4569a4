//! The JSON-RPC server on walinkd's Unix socket.
//!
//! One task per connection. Requests on a connection are answered in order;
//! while one runs (a stream such as `subscribe` may run for hours), later
//! lines are read and queued so the server still notices the client leaving.
//! A client that hangs up cancels its running request: the handler future is
//! dropped. A client that only closes its write side (`shutdown(SHUT_WR)`,
//! what `socat` does at the end of its input) still gets its answers.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::protocol::{
    JSONRPC_VERSION, Lagged, MAX_LINE_BYTES, Notification, Reply, Response, ResultLine, RpcError,
    json_kind, notification,
};

/// How many notifications a connection buffers for a slow reader before it
/// starts dropping them (and then tells the client with a `lagged` notification).
pub const SINK_CAPACITY: usize = 256;

/// Lines a client may send ahead while a request is still running; past
/// this the server stops reading until the queue drains.
const MAX_PIPELINED_LINES: usize = 64;

/// How long a connection may take to write its "shutting down" answer once
/// the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Answers requests. Implemented by the daemon.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Streaming methods push notifications through `sink`
    /// and return when the stream ends; the returned value (or error) is the
    /// final response. The future is dropped, mid-way, when the client hangs
    /// up or the server shuts down, so it must not hold state that a drop
    /// would corrupt. `sink.notify` never waits: when the client reads too
    /// slowly and [`SINK_CAPACITY`] notifications are queued, new ones are
    /// dropped and counted, and the client receives a `lagged` notification
    /// with the count once it catches up.
    async fn handle(
        &self,
        method: &str,
        params: Value,
        sink: NotificationSink,
    ) -> Result<Reply, RpcError>;
}

/// The outgoing side of a streaming request.
#[derive(Debug, Clone)]
pub struct NotificationSink {
    tx: mpsc::Sender<Notification>,
    missed: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The request is over (client gone or request answered): stop streaming.
    #[error("the client is gone")]
    Closed,
    #[error("cannot encode notification params: {0}")]
    Encode(#[from] serde_json::Error),
}

impl NotificationSink {
    /// A sink and the receiving end its notifications go to; the server makes
    /// one per request. Also useful to test a handler without a socket.
    pub fn channel(capacity: usize) -> (NotificationSink, mpsc::Receiver<Notification>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            NotificationSink {
                tx,
                missed: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// Queues `{"jsonrpc":"2.0","method":method,"params":params}` without
    /// waiting. A full queue drops it and counts it (see [`Handler::handle`]);
    /// that is not an error. `Err(Closed)` means nobody will read it.
    pub fn notify(&self, method: &str, params: impl Serialize) -> Result<(), SinkError> {
        let params = serde_json::to_value(params)?;
        match self.tx.try_send(Notification::new(method, params)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.missed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SinkError::Closed),
        }
    }

    /// Counts notifications the handler itself lost (e.g. a lagging
    /// `tokio::sync::broadcast` receiver), so the client's `lagged`
    /// notification covers them too.
    pub fn add_missed(&self, count: u64) {
        self.missed.fetch_add(count, Ordering::Relaxed);
    }

    /// True once the request is over.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes when the request is over; lets a handler stop work that
    /// outlives its own future (a spawned task holding a clone).
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Notifications dropped and not yet reported to the client.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

/// Serves connections on `listener` until `shutdown` is cancelled, then tells
/// clients with a request in progress that the daemon is shutting down,
/// closes every connection and returns. It never removes the socket file:
/// the caller that bound it does.
pub async fn serve(listener: UnixListener, handler: Arc<dyn Handler>, shutdown: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, handler.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: accepting again at once would spin.
                    warn!(error = %e, "cannot accept an IPC connection; retrying shortly");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!(
            remaining = connections.len(),
            "closing IPC connections that did not finish in time"
        );
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: UnixStream,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) {
    match stream.peer_cred() {
        Ok(cred) => debug!(
            uid = cred.uid(),
            gid = cred.gid(),
            pid = cred.pid(),
            "IPC client connected"
        ),
        Err(e) => debug!(error = %e, "IPC client connected; peer credentials unavailable"),
    }
    let hangup = match HangupWatch::new(&stream) {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "cannot watch an IPC connection for hang-up; closing it");
            return;
        }
    };
    let (read, write) = stream.into_split();
    let mut conn = Connection {
        reader: LineReader::new(read),
        writer: write,
        pending: VecDeque::new(),
        input_closed: false,
        written_since_lag_check: 0,
        hangup,
        handler,
        shutdown,
    };
    conn.run().await;
    debug!("IPC client disconnected");
}

struct Connection {
    reader: LineReader<tokio::net::unix::OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pending: VecDeque<Result<String, LinesCodecError>>,
    input_closed: bool,
    written_since_lag_check: usize,
    hangup: HangupWatch,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
}

/// Why a connection ends.
enum End {
    ClientGone,
    Shutdown,
}

impl Connection {
    async fn run(&mut self) {
        loop {
            let item = match self.pending.pop_front() {
                Some(item) => item,
                None if self.input_closed => return,
                None => tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    item = self.reader.next_line() => match item {
                        Some(item) => item,
                        None => return,
                    },
                },
            };
            let line = match item {
                Ok(line) => line,
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    if self
                        .reply(Value::Null, Err(RpcError::line_too_long()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Err(LinesCodecError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    let err = RpcError::parse_error("line is not valid UTF-8");
                    if self.reply(Value::Null, Err(err)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(LinesCodecError::Io(e)) => {
                    debug!(error = %e, "IPC read failed");
                    return;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let request = match decode_request(&line) {
                Ok(request) => request,
                Err((id, err)) => {
                    if self.reply(id, Err(err)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            match self.run_request(request).await {
                Ok(()) => {}
                Err(End::ClientGone) => return,
                Err(End::Shutdown) => {
                    let _ = self.writer.shutdown().await;
                    return;
                }
            }
        }
    }

    /// Runs one request to its end, writing its notifications as they come.
    async fn run_request(&mut self, request: DecodedRequest) -> Result<(), End> {
        let (sink, mut rx) = NotificationSink::channel(SINK_CAPACITY);
        let missed = sink.missed.clone();
        let handler = self.handler.clone();
        let future = handler.handle(&request.method, request.params, sink);
        tokio::pin!(future);
        let result = loop {
            let read_more = !self.input_closed && self.pending.len() < MAX_PIPELINED_LINES;
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    if let Some(id) = request.id {
                        let _ = self.reply(id, Err(RpcError::shutting_down())).await;
                    }
                    return Err(End::Shutdown);
                }
                _ = self.hangup.wait() => return Err(End::ClientGone),
                result = &mut future => break result,
                Some(n) = rx.recv() => self.write_notification(&n, rx.is_empty(), &missed).await?,
                item = self.reader.next_line(), if read_more => match item {
                    Some(item) => self.pending.push_back(item),
                    None => self.input_closed = true,
                },
            }
        };
        // Notifications queued before the handler returned go out before its answer.
        while let Ok(n) = rx.try_recv() {
            self.write_notification(&n, rx.is_empty(), &missed).await?;
        }
        match request.id {
            Some(id) => self.reply(id, result).await,
            None => {
                if let Err(e) = result {
                    debug!(method = %request.method, error = %e.message, "IPC notification failed");
                }
                Ok(())
            }
        }
    }

    async fn write_notification(
        &mut self,
        n: &Notification,
        rx_is_empty: bool,
        missed: &AtomicU64,
    ) -> Result<(), End> {
        self.write_json(n).await?;
        // Dropped notifications were the newest when they were dropped, so
        // the gap sits after what was queued: report it once the queue has
        // drained, or after a queue's worth of writes if it never drains.
        self.written_since_lag_check += 1;
        if !rx_is_empty && self.written_since_lag_check < SINK_CAPACITY {
            return Ok(());
        }
        self.written_since_lag_check = 0;
        let dropped = missed.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let lagged = Notification::new(
                notification::LAGGED,
                serde_json::json!(Lagged { missed: dropped }),
            );
            self.write_json(&lagged).await?;
        }
        Ok(())
    }

    async fn reply(&mut self, id: Value, result: Result<Reply, RpcError>) -> Result<(), End> {
        match result {
            Ok(result) => {
                self.write_json(&ResultLine {
                    jsonrpc: JSONRPC_VERSION,
                    id: &id,
                    result: &result,
                })
                .await
            }
            Err(err) => self.write_json(&Response::error(id, err)).await,
        }
    }

    async fn write_json(&mut self, message: &impl Serialize) -> Result<(), End> {
        let mut line = serde_json::to_vec(message).map_err(|e| {
            warn!(error = %e, "cannot encode an IPC message");
            End::ClientGone
        })?;
        line.push(b'\n');
        tokio::select! {
            written = self.writer.write_all(&line) => written.map_err(|e| {
                debug!(error = %e, "IPC write failed");
                End::ClientGone
            }),
            _ = self.hangup.wait() => Err(End::ClientGone),
        }
    }
}

/// One request line with its JSON-RPC envelope checked; the params are
/// checked by [`super::protocol::Call::parse`] for the method.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// `None` for a JSON-RPC notification (no reply).
    pub id: Option<Value>,
    pub method: String,
    pub params: Value,
}

/// Checks the JSON-RPC envelope of one request line (without its newline);
/// on failure returns the id to answer with and the error. Public so the
/// fuzz targets and tests drive exactly what the server runs on every line.
pub fn decode_request(line: &str) -> Result<DecodedRequest, (Value, RpcError)> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| (Value::Null, RpcError::parse_error(e)))?;
    let mut object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err((
                Value::Null,
                RpcError::invalid_request(
                    "batch requests are not supported; send one request object per line",
                ),
            ));
        }
        other => {
            return Err((
                Value::Null,
                RpcError::invalid_request(format!(
                    "expected a JSON object, got {}",
                    json_kind(&other)
                )),
            ));
        }
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(id),
        Some(other) => {
            return Err((
                Value::Null,
                RpcError::invalid_request(format!(
                    "\"id\" must be a string, a number or null, got {}",
                    json_kind(&other)
                )),
            ));
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    match object.get("jsonrpc") {
        Some(Value::String(v)) if v == JSONRPC_VERSION => {}
        _ => {
            return Err((
                reply_id,
                RpcError::invalid_request("\"jsonrpc\" must be \"2.0\""),
            ));
        }
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        Some(other) => {
            return Err((
                reply_id,
                RpcError::invalid_request(format!(
                    "\"method\" must be a string, got {}",
                    json_kind(&other)
                )),
            ));
        }
        None => {
            return Err((reply_id, RpcError::invalid_request("missing \"method\"")));
        }
    };
    let params = object.remove("params").unwrap_or(Value::Null);
    Ok(DecodedRequest { id, method, params })
}

/// Reads newline-delimited lines with [`LinesCodec`]'s length limit, and,
/// unlike `FramedRead`, keeps going after an over-long or non-UTF-8 line.
/// `next_line` is cancel-safe: all progress lives in `self`.
struct LineReader<R> {
    inner: R,
    buf: BytesMut,
    codec: LinesCodec,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
            codec: LinesCodec::new_with_max_length(MAX_LINE_BYTES),
            eof: false,
        }
    }

    /// The next line; `None` at end of input.
    async fn next_line(&mut self) -> Option<Result<String, LinesCodecError>> {
        loop {
            if self.eof {
                return self.codec.decode_eof(&mut self.buf).transpose();
            }
            match self.codec.decode(&mut self.buf) {
                Ok(Some(line)) => return Some(Ok(line)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            self.buf.reserve(8 * 1024);
            match self.inner.read_buf(&mut self.buf).await {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

/// Notices when the peer has closed its end completely (EPOLLHUP), as
/// opposed to only shutting down its write side, without reading from the
/// socket. It watches a duplicate of the socket's descriptor registered for
/// priority data only: epoll always reports hang-ups, and a half-close or
/// ordinary data never wakes it.
struct HangupWatch {
    fd: AsyncFd<OwnedFd>,
}

impl HangupWatch {
    fn new(stream: &UnixStream) -> io::Result<Self> {
        let dup = stream.as_fd().try_clone_to_owned()?;
        // SAFETY: the duplicate is owned by the AsyncFd and closed only when
        // the AsyncFd is dropped, which deregisters it first.
        let fd = unsafe { AsyncFd::register_with_interest(dup, Interest::PRIORITY)? };
        Ok(HangupWatch { fd })
    }

    /// Completes once the peer has hung up.
    async fn wait(&self) {
        loop {
            match self.fd.ready(Interest::PRIORITY).await {
                Ok(mut guard) => {
                    if guard.ready().is_read_closed() {
                        return;
                    }
                    // Out-of-band data does not exist on Unix sockets; any
                    // other wake-up is spurious.
                    guard.clear_ready();
                }
                Err(_) => return,
            }
        }
    }
}

/// Binds walinkd's socket at `path`: creates the parent directory, replaces
/// a stale socket left by a crashed daemon (but refuses when a daemon is
/// still listening, or when the path is not a socket), and makes it mode
/// 0660 owned by `group` when that group exists and we may chown to it.
pub fn bind(path: &Path, group: Option<&str>) -> io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};

    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| annotate(e, "cannot create the socket directory", parent))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{}: another walinkd is already listening there; stop it or choose another daemon.socket",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| annotate(e, "cannot remove the stale socket", path))?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{}: exists and is not a socket; remove it or choose another daemon.socket",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(annotate(e, "cannot inspect the socket path", path)),
    }
    let listener =
        UnixListener::bind(path).map_err(|e| annotate(e, "cannot bind the socket", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| annotate(e, "cannot set the socket's mode to 0660", path))?;
    if let Some(group) = group {
        match group_id(group) {
            Ok(Some(gid)) => {
                if let Err(e) = std::os::unix::fs::chown(path, None, Some(gid)) {
                    warn!(
                        socket = %path.display(), group, error = %e,
                        "cannot give the socket to its group; only the daemon's user and group can use it"
                    );
                }
            }
            Ok(None) => warn!(
                socket = %path.display(), group,
                "socket group does not exist; only the daemon's user and group can use the socket (create the group or set daemon.socket_group)"
            ),
            Err(e) => warn!(group, error = %e, "cannot look up the socket group"),
        }
    }
    Ok(listener)
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// The gid of group `name`, `None` if there is no such group.
fn group_id(name: &str) -> io::Result<Option<u32>> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "group name contains NUL"))?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `group` and `result` are written by getgrnam_r only; `buf`
        // outlives the call and its length is passed; `cname` is NUL-terminated.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut group,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some(group.gr_gid)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            // Lookup failures that mean "no such group" on some libcs.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: RawFd = 3;

static SYSTEMD_FD_TAKEN: AtomicBool = AtomicBool::new(false);

/// The listening socket passed by systemd socket activation (`LISTEN_PID`
/// is us and `LISTEN_FDS` ≥ 1: fd 3), or `None` when we were not activated
/// that way and should [`bind`] our own. Only the first call can take it.
/// Must run inside a tokio runtime.
pub fn systemd_listener() -> io::Result<Option<UnixListener>> {
    let count = listen_fds(
        std::process::id(),
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
    );
    if count == 0 || SYSTEMD_FD_TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    if count > 1 {
        warn!(count, "systemd passed several sockets; using the first");
    }
    // SAFETY: LISTEN_PID names this process, so systemd handed fd 3 to us,
    // and the flag above makes sure it is wrapped (owned) only once.
    let fd = unsafe { OwnedFd::from_raw_fd(SD_LISTEN_FDS_START) };
    listener_from_fd(fd).map(Some)
}

/// How many descriptors systemd passed to process `pid`, per the
/// `LISTEN_PID` and `LISTEN_FDS` variables (0 when they are for someone else).
fn listen_fds(pid: u32, listen_pid: Option<&str>, listen_fds: Option<&str>) -> usize {
    let for_us = listen_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid);
    if !for_us {
        return 0;
    }
    listen_fds
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0)
}

/// Wraps an already-listening Unix stream socket (e.g. passed by systemd).
/// Must run inside a tokio runtime.
pub fn listener_from_fd(fd: OwnedFd) -> io::Result<UnixListener> {
    check_unix_stream(fd.as_raw_fd())?;
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

fn check_unix_stream(fd: RawFd) -> io::Result<()> {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `kind` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "passed descriptor {fd} is not a socket: {}; check the .socket unit",
                io::Error::last_os_error()
            ),
        ));
    }
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut addr_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` is a sockaddr_storage, large enough for any address.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut addr_len,
        )
    };
    if rc != 0 || kind != libc::SOCK_STREAM || addr.ss_family != libc::AF_UNIX as libc::sa_family_t
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "passed descriptor {fd} is not a Unix stream socket; the .socket unit needs ListenStream=/run/walink/walink.sock"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_fds_only_counts_for_our_pid() {
        assert_eq!(listen_fds(42, Some("42"), Some("1")), 1);
        assert_eq!(listen_fds(42, Some("42"), Some("2")), 2);
        assert_eq!(listen_fds(42, Some("41"), Some("1")), 0);
        assert_eq!(listen_fds(42, None, Some("1")), 0);
        assert_eq!(listen_fds(42, Some("42"), None), 0);
        assert_eq!(listen_fds(42, Some("x"), Some("1")), 0);
    }

    #[test]
    fn decode_request_envelope_errors() {
        let (id, err) = decode_request("{not json").err().unwrap();
        assert_eq!((id, err.code), (Value::Null, -32700));
        let (_, err) = decode_request("[1,2]").err().unwrap();
        assert!(err.message.contains("batch"), "{}", err.message);
        let (_, err) = decode_request("42").err().unwrap();
        assert!(err.message.contains("a number"), "{}", err.message);
        let (id, err) = decode_request(r#"{"jsonrpc":"2.0","id":7}"#).err().unwrap();
        assert_eq!(id, Value::from(7));
        assert!(
            err.message.contains("missing \"method\""),
            "{}",
            err.message
        );
        let (id, err) = decode_request(r#"{"id":"x","method":"status"}"#)
            .err()
            .unwrap();
        assert_eq!(id, Value::from("x"));
        assert!(err.message.contains("2.0"), "{}", err.message);
        let (_, err) = decode_request(r#"{"jsonrpc":"2.0","id":[1],"method":"status"}"#)
            .err()
            .unwrap();
        assert!(err.message.contains("\"id\""), "{}", err.message);
        let ok = decode_request(r#"{"jsonrpc":"2.0","method":"status"}"#)
            .ok()
            .unwrap();
        assert!(ok.id.is_none());
        assert_eq!(ok.params, Value::Null);
    }

    #[test]
    fn group_lookup() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("walink-no-such-group-xyz").unwrap(), None);
    }

    #[tokio::test]
    async fn line_reader_survives_long_and_invalid_lines() {
        let mut data = Vec::new();
        data.extend_from_slice(b"first\n");
        data.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        data.extend_from_slice(b"\n\xff\xfe\nlast");
        let mut reader = LineReader::new(&data[..]);
        assert_eq!(reader.next_line().await.unwrap().unwrap(), "first");
        assert!(matches!(
            reader.next_line().await,
            Some(Err(LinesCodecError::MaxLineLengthExceeded))
        ));
        assert!(matches!(
            reader.next_line().await,
            Some(Err(LinesCodecError::Io(e))) if e.kind() == io::ErrorKind::InvalidData
        ));
        assert_eq!(reader.next_line().await.unwrap().unwrap(), "last");
        assert!(reader.next_line().await.is_none());
    }
}
