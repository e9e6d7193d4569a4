//! HTTP/1.1 over the account's own path: the same [`Dialer`] (IP family,
//! happy eyeballs, proxy with remote DNS) and the same rustls setup as the
//! WebSocket, so no request of the library leaves by a route the operator
//! did not choose.
//!
//! One request per connection (`Connection: close`): walink makes a handful
//! of requests an hour per account (the version page, media), not enough to
//! pay for a pool. Response heads are parsed by `httparse`, chunk sizes too;
//! bodies are read as they arrive, so a large download is never held whole.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::dial::{DialError, Dialer};
use super::proxy::split_host_port;
use super::tls::{self, TlsError};

/// Longest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers a response may carry.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size or trailer line accepted in a chunked body.
const MAX_LINE: usize = 4 * 1024;
/// Size of one read from the socket.
const READ_CHUNK: usize = 16 * 1024;

/// Names the test harness points at loopback servers (see [`HostMap`]).
pub const TEST_HOSTS_ENV: &str = "WALINK_TEST_HOSTS";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url:?} is not an https:// URL with a host")]
    BadUrl { url: String },
    #[error("{url:?}: plain http:// is refused; WhatsApp's hosts are reached over https only")]
    PlainHttp { url: String },
    #[error("header {0:?} has a line break or a character HTTP does not allow")]
    BadHeader(String),
    #[error("{0}")]
    Dial(#[from] DialError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("{host} {what}: {source}")]
    Io {
        host: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{host} sent nothing for {after:?} while {what}")]
    Timeout {
        host: String,
        what: &'static str,
        after: Duration,
    },
    #[error("{host} sent a malformed HTTP response: {why}")]
    Malformed { host: String, why: String },
    #[error("the response from {host} is larger than {limit} bytes")]
    TooLarge { host: String, limit: usize },
}

/// Host names that test builds send to a loopback server instead, over plain
/// HTTP: `WALINK_TEST_HOSTS="web.whatsapp.com=127.0.0.1:8080,mmg.whatsapp.net=localhost:9000"`.
///
/// Honoured only in debug builds (`cfg(debug_assertions)`, what `make test`
/// and `make demo` build): a release build compiles the lookup out and
/// always talks to the real hosts over TLS. Targets must be loopback
/// addresses, `localhost`, or names under `.test` (RFC 6761, which only a
/// test proxy resolves), and they are still dialed through the account's
/// proxy, so a test can prove a request took the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMap(HashMap<String, (String, u16)>);

impl HostMap {
    /// The map the process was started with (empty in release builds).
    pub fn from_env() -> Arc<HostMap> {
        static MAP: OnceLock<Arc<HostMap>> = OnceLock::new();
        MAP.get_or_init(|| {
            #[cfg(debug_assertions)]
            if let Ok(text) = std::env::var(TEST_HOSTS_ENV) {
                match HostMap::parse(&text) {
                    Ok(map) => return Arc::new(map),
                    Err(e) => tracing::error!("ignoring {TEST_HOSTS_ENV}: {e}"),
                }
            }
            Arc::default()
        })
        .clone()
    }

    /// Parses `name=host:port` pairs separated by commas.
    pub fn parse(text: &str) -> Result<HostMap, String> {
        let mut map = HashMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, target) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not NAME=HOST:PORT"))?;
            let (host, port) =
                split_host_port(target).ok_or_else(|| format!("{target:?} is not HOST:PORT"))?;
            let loopback = host
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(host == "localhost" || host.ends_with(".test"));
            if !loopback {
                return Err(format!(
                    "{target:?} is not a loopback address, localhost or a .test name"
                ));
            }
            map.insert(name.to_ascii_lowercase(), (host, port));
        }
        Ok(HostMap(map))
    }

    fn get(&self, host: &str) -> Option<&(String, u16)> {
        self.0.get(&host.to_ascii_lowercase())
    }
}

/// An `https://` URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    /// Where the connection really goes and whether it is TLS: the host
    /// itself over TLS, or a test override over plain HTTP.
    dial: (String, u16, bool),
}

impl Target {
    pub fn parse(url: &str, hosts: &HostMap) -> Result<Target, HttpError> {
        let bad = || HttpError::BadUrl {
            url: url.to_owned(),
        };
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = match path.split('#').next().unwrap_or_default() {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if path.contains(|c: char| c.is_ascii_whitespace() || c.is_ascii_control()) {
            return Err(bad());
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = split_host_port(authority)
            .or_else(|| {
                let host = authority.trim_start_matches('[').trim_end_matches(']');
                (!host.is_empty() && !authority.contains(':') || authority.ends_with(']'))
                    .then(|| (host.to_owned(), default_port))
            })
            .filter(|(h, _)| !h.is_empty() && !h.contains('@'))
            .ok_or_else(bad)?;
        let dial = match hosts.get(&host) {
            Some((to, to_port)) => (to.clone(), *to_port, false),
            None if https => (host.clone(), port, true),
            None => {
                return Err(HttpError::PlainHttp {
                    url: url.to_owned(),
                });
            }
        };
        Ok(Target {
            host,
            port,
            path,
            dial,
        })
    }

    /// The `Host` header value.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 443 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// What goes after the request head.
pub enum RequestBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Exactly `len` bytes read from a blocking reader: only from a thread
    /// that may block (the library calls its streaming upload from one).
    Blocking(&'a mut (dyn io::Read + Send), u64),
}

/// A response whose body has not been read yet.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

enum Framing {
    Length(u64),
    /// Chunked: bytes left in the current chunk, `None` before a size line.
    Chunked(Option<u64>),
    UntilClose,
    Done,
}

/// A response body, read from the socket as it is consumed.
pub struct Body {
    reader: BufReader<Box<dyn Io>>,
    framing: Framing,
    host: String,
    timeout: Duration,
}

/// An HTTP/1.1 client on one account's dialer.
#[derive(Debug, Clone)]
pub struct HttpClient {
    dialer: Dialer,
    hosts: Arc<HostMap>,
}

impl HttpClient {
    pub fn new(dialer: Dialer, hosts: Arc<HostMap>) -> HttpClient {
        HttpClient { dialer, hosts }
    }

    /// How requests leave: `directly` or `through socks5://host:port`.
    pub fn route(&self) -> String {
        match &self.dialer.proxy {
            Some(p) => format!("through {p}"),
            None => "directly".to_owned(),
        }
    }

    /// Sends `request` and reads the response head. Any status is a
    /// response, not an error: the caller decides what a 404 means.
    pub async fn send(
        &self,
        request: &Request,
        body: RequestBody<'_>,
    ) -> Result<Response, HttpError> {
        let target = Target::parse(&request.url, &self.hosts)?;
        let timeout = self.dialer.timeout;
        let (dial_host, dial_port, use_tls) = &target.dial;
        let tcp = self.dialer.connect(dial_host, *dial_port).await?;
        let mut stream: Box<dyn Io> = if *use_tls {
            Box::new(tls::connect(tcp, &target.host, timeout).await?.0)
        } else {
            Box::new(tcp)
        };
        let head = request_head(request, &target, &body)?;
        let host = target.host.clone();
        let mut out = Writer {
            stream: &mut stream,
            host: &host,
            timeout,
        };
        out.write(head.as_bytes()).await?;
        match body {
            RequestBody::Empty => {}
            RequestBody::Bytes(bytes) => {
                for piece in bytes.chunks(READ_CHUNK) {
                    out.write(piece).await?;
                }
            }
            RequestBody::Blocking(reader, len) => {
                let mut left = len;
                let mut buf = vec![0u8; READ_CHUNK];
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = match reader.read(&mut buf[..want]) {
                        Ok(0) => Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the upload ended {left} bytes short of its length"),
                        )),
                        other => other,
                    }
                    .map_err(|source| HttpError::Io {
                        host: host.clone(),
                        what: "reading the upload",
                        source,
                    })?;
                    out.write(&buf[..n]).await?;
                    left -= n as u64;
                }
            }
        }

        let mut reader = BufReader::with_capacity(READ_CHUNK, stream);
        let (status, headers) = bounded("waiting for the response", timeout, async {
            read_head(&mut reader, &host).await
        })
        .await
        .map_err(|e| e.flatten(&host))?;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let framing = if request.method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            Framing::Done
        } else if header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            Framing::Chunked(None)
        } else if let Some(len) = header("content-length") {
            Framing::Length(len.trim().parse().map_err(|_| HttpError::Malformed {
                host: host.clone(),
                why: format!("Content-Length {len:?}"),
            })?)
        } else {
            Framing::UntilClose
        };
        Ok(Response {
            status,
            headers,
            body: Body {
                reader,
                framing,
                host,
                timeout,
            },
        })
    }
}

/// Writes to the connection, each write bounded by the timeout (so a slow
/// but moving upload is not cut off, and a stalled one is).
struct Writer<'a> {
    stream: &'a mut Box<dyn Io>,
    host: &'a str,
    timeout: Duration,
}

impl Writer<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        let host = self.host;
        let stream = &mut *self.stream;
        bounded("sending the request", self.timeout, async move {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .map_err(|e| e.with_host(host, "sending the request"))
    }
}

/// Either an I/O failure or a timeout, before a host is attached.
enum Bounded<E> {
    Failed(E),
    TimedOut(&'static str, Duration),
}

impl Bounded<io::Error> {
    fn with_host(self, host: &str, what: &'static str) -> HttpError {
        match self {
            Bounded::Failed(source) => HttpError::Io {
                host: host.to_owned(),
                what,
                source,
            },
            Bounded::TimedOut(what, after) => HttpError::Timeout {
                host: host.to_owned(),
                what,
                after,
            },
        }
    }
}

impl Bounded<HttpError> {
    fn flatten(self, host: &str) -> HttpError {
        match self {
            Bounded::Failed(e) => e,
            Bounded::TimedOut(what, after) => HttpError::Timeout {
                host: host.to_owned(),
                what,
                after,
            },
        }
    }
}

/// Runs `work`, failing with a timeout that names `what` after `after`.
async fn bounded<T, E>(
    what: &'static str,
    after: Duration,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, Bounded<E>> {
    match tokio::time::timeout(after, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Bounded::Failed(e)),
        Err(_) => Err(Bounded::TimedOut(what, after)),
    }
}

fn request_head(
    request: &Request,
    target: &Target,
    body: &RequestBody<'_>,
) -> Result<String, HttpError> {
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !token(&request.method) {
        return Err(HttpError::BadHeader(request.method.clone()));
    }
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        request.method,
        target.path,
        target.authority()
    );
    for (name, value) in &request.headers {
        let framing = ["host", "content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if framing {
            continue;
        }
        if !token(name) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(HttpError::BadHeader(name.clone()));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match body {
        RequestBody::Empty if request.method.eq_ignore_ascii_case("GET") => {}
        RequestBody::Empty => head.push_str("Content-Length: 0\r\n"),
        RequestBody::Bytes(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
        RequestBody::Blocking(_, len) => head.push_str(&format!("Content-Length: {len}\r\n")),
    }
    head.push_str("Connection: close\r\n\r\n");
    Ok(head)
}

async fn read_head(
    reader: &mut BufReader<Box<dyn Io>>,
    host: &str,
) -> Result<(u16, Vec<(String, String)>), HttpError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let available = reader.fill_buf().await.map_err(|source| HttpError::Io {
            host: host.to_owned(),
            what: "reading the response",
            source,
        })?;
        if available.is_empty() {
            return Err(HttpError::Malformed {
                host: host.to_owned(),
                why: if buf.is_empty() {
                    "the connection closed before a response".into()
                } else {
                    "the connection closed inside the response head".into()
                },
            });
        }
        // Consume up to the end of the head only: what follows is body.
        let before = buf.len();
        buf.extend_from_slice(available);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                reader.consume(len - before);
                let status = response.code.unwrap_or_default();
                let headers = response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                return Ok((status, headers));
            }
            Ok(httparse::Status::Partial) => {
                let n = buf.len() - before;
                reader.consume(n);
                if buf.len() > MAX_HEAD {
                    return Err(HttpError::Malformed {
                        host: host.to_owned(),
                        why: format!("a response head over {MAX_HEAD} bytes"),
                    });
                }
            }
            Err(e) => {
                return Err(HttpError::Malformed {
                    host: host.to_owned(),
                    why: e.to_string(),
                });
            }
        }
    }
}

impl Body {
    fn io_err(&self, source: io::Error) -> HttpError {
        HttpError::Io {
            host: self.host.clone(),
            what: "reading the response body",
            source,
        }
    }

    fn malformed(&self, why: impl Into<String>) -> HttpError {
        HttpError::Malformed {
            host: self.host.clone(),
            why: why.into(),
        }
    }

    /// The next piece of the body; `None` once it is complete.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        let (host, timeout) = (self.host.clone(), self.timeout);
        bounded("sending the response body", timeout, self.next_piece())
            .await
            .map_err(|e| e.flatten(&host))
    }

    async fn next_piece(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            match self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                Framing::Length(left) => {
                    let piece = self.read_up_to(left).await?;
                    if piece.is_empty() {
                        return Err(self.malformed(format!(
                            "the connection closed {left} bytes before the end of the body"
                        )));
                    }
                    self.framing = Framing::Length(left - piece.len() as u64);
                    return Ok(Some(piece));
                }
                Framing::UntilClose => {
                    let piece = self.read_up_to(READ_CHUNK as u64).await?;
                    if piece.is_empty() {
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                    return Ok(Some(piece));
                }
                Framing::Chunked(None) => {
                    let line = self.line().await?;
                    let size = match httparse::parse_chunk_size(&line) {
                        Ok(httparse::Status::Complete((_, size))) => size,
                        _ => return Err(self.malformed("a bad chunk size line")),
                    };
                    if size == 0 {
                        // Trailers, up to the blank line.
                        while self.line().await? != b"\r\n" {}
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                    self.framing = Framing::Chunked(Some(size));
                }
                Framing::Chunked(Some(0)) => {
                    if self.line().await? != b"\r\n" {
                        return Err(self.malformed("a chunk longer than its size"));
                    }
                    self.framing = Framing::Chunked(None);
                }
                Framing::Chunked(Some(left)) => {
                    let piece = self.read_up_to(left).await?;
                    if piece.is_empty() {
                        return Err(self.malformed("the connection closed inside a chunk"));
                    }
                    self.framing = Framing::Chunked(Some(left - piece.len() as u64));
                    return Ok(Some(piece));
                }
            }
        }
    }

    async fn read_up_to(&mut self, limit: u64) -> Result<Bytes, HttpError> {
        let want = READ_CHUNK.min(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut buf = BytesMut::zeroed(want);
        let n = self
            .reader
            .read(&mut buf)
            .await
            .map_err(|e| self.io_err(e))?;
        buf.truncate(n);
        Ok(buf.freeze())
    }

    /// One CRLF-terminated line of chunked framing, CRLF included.
    async fn line(&mut self) -> Result<Vec<u8>, HttpError> {
        let mut line = Vec::new();
        let mut limited = (&mut self.reader).take(MAX_LINE as u64);
        limited
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| self.io_err(e))?;
        if !line.ends_with(b"\r\n") {
            return Err(self.malformed("a chunked-encoding line without CRLF"));
        }
        Ok(line)
    }

    /// The whole body, refusing one larger than `limit`.
    pub async fn to_vec(mut self, limit: usize) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        while let Some(piece) = self.chunk().await? {
            if out.len() + piece.len() > limit {
                return Err(HttpError::TooLarge {
                    host: self.host,
                    limit,
                });
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::IpFamily;

    fn client(hosts: HostMap) -> HttpClient {
        HttpClient::new(
            Dialer::new(IpFamily::Auto, None, Duration::from_secs(5)),
            Arc::new(hosts),
        )
    }

    fn get(url: &str) -> Request {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: vec![("user-agent".into(), "walink-test".into())],
        }
    }

    /// Serves one connection with `reply` and returns the request it read.
    async fn serve_once(reply: &'static [u8]) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(reply).await.unwrap();
            String::from_utf8(got).unwrap()
        });
        (port, task)
    }

    fn to(port: u16) -> HostMap {
        HostMap::parse(&format!("web.whatsapp.com=127.0.0.1:{port}")).unwrap()
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded_and_the_host_header_is_the_real_name() {
        let (port, server) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\n",
        )
        .await;
        let response = client(to(port))
            .send(&get("https://web.whatsapp.com/sw.js"), RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body.to_vec(1024).await.unwrap(), b"hello, world");
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /sw.js HTTP/1.1\r\nHost: web.whatsapp.com\r\n"));
        assert!(request.contains("user-agent: walink-test\r\n"), "{request}");
    }

    #[tokio::test]
    async fn content_length_statuses_and_limits() {
        let (port, _server) =
            serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone").await;
        let response = client(to(port))
            .send(&get("https://web.whatsapp.com/x"), RequestBody::Empty)
            .await
            .unwrap();
        assert_eq!(response.status, 404, "a status is a response, not an error");
        assert_eq!(response.body.to_vec(1024).await.unwrap(), b"gone");

        let (port, _server) =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").await;
        let response = client(to(port))
            .send(&get("https://web.whatsapp.com/x"), RequestBody::Empty)
            .await
            .unwrap();
        let err = response.body.to_vec(1024).await.unwrap_err();
        assert!(err.to_string().contains("5 bytes before the end"), "{err}");

        let (port, _server) =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let response = client(to(port))
            .send(&get("https://web.whatsapp.com/x"), RequestBody::Empty)
            .await
            .unwrap();
        assert!(matches!(
            response.body.to_vec(4).await,
            Err(HttpError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn garbage_is_a_malformed_response_and_refusal_names_the_address() {
        let (port, _server) = serve_once(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        let err = client(to(port))
            .send(&get("https://web.whatsapp.com/x"), RequestBody::Empty)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, HttpError::Malformed { .. }), "{err}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = client(to(closed.port()))
            .send(&get("https://web.whatsapp.com/x"), RequestBody::Empty)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[test]
    fn urls_and_overrides() {
        let none = HostMap::default();
        let t = Target::parse("https://mmg.whatsapp.net/d/f/x?a=1", &none).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("mmg.whatsapp.net", 443, "/d/f/x?a=1")
        );
        assert_eq!(t.dial, ("mmg.whatsapp.net".into(), 443, true));
        let t = Target::parse("https://[::1]:8443?q", &none).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8443, "/?q")
        );
        assert_eq!(t.authority(), "[::1]:8443");
        assert!(matches!(
            Target::parse("http://web.whatsapp.com/sw.js", &none),
            Err(HttpError::PlainHttp { .. })
        ));
        for bad in ["ftp://x/", "https:///x", "https://u@h/x", "https://h/a b"] {
            assert!(Target::parse(bad, &none).is_err(), "{bad}");
        }
        let map =
            HostMap::parse("Web.WhatsApp.com=127.0.0.1:81, mmg.whatsapp.net=sw.test:82").unwrap();
        let t = Target::parse("https://web.whatsapp.com/sw.js", &map).unwrap();
        assert_eq!(t.dial, ("127.0.0.1".into(), 81, false));
        let t = Target::parse("http://mmg.whatsapp.net/", &map).unwrap();
        assert_eq!(t.dial, ("sw.test".into(), 82, false));
        assert!(HostMap::parse("web.whatsapp.com=10.0.0.1:80").is_err());
        assert!(HostMap::parse("web.whatsapp.com=example.com:80").is_err());
        assert!(HostMap::parse("web.whatsapp.com").is_err());
    }

    #[test]
    fn headers_cannot_smuggle_lines() {
        let target = Target::parse("https://h/x", &HostMap::default()).unwrap();
        let mut request = get("https://h/x");
        request.headers.push(("x".into(), "a\r\nEvil: 1".into()));
        assert!(request_head(&request, &target, &RequestBody::Empty).is_err());
        let mut request = get("https://h/x");
        request.headers.push(("Content-Length".into(), "99".into()));
        let head = request_head(&request, &target, &RequestBody::Bytes(b"abc")).unwrap();
        assert!(
            head.contains("Content-Length: 3\r\n") && !head.contains("99"),
            "{head}"
        );
    }
}
