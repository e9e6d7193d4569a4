//! Proxies between walink and WhatsApp: SOCKS5 (names resolved by the proxy)
//! and HTTP CONNECT. Both are a few bytes of handshake on a TCP stream, after
//! which the stream is a plain tunnel to the target; hand-written so the
//! dependency tree stays small and credentials never pass through a
//! library's logging.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest HTTP CONNECT reply head we read before giving up on the proxy.
const MAX_CONNECT_REPLY: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Socks5,
    Http,
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Http => "http",
        }
    }
}

/// A username and password. Debug output hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A configured proxy. `Display` is `scheme://host:port`, never credentials,
/// so it is what logs and status show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    /// From the URL (`socks5://user:pass@host:port`).
    pub credentials: Option<Credentials>,
    /// A file holding `username:password`, read at each dial so the secret
    /// stays out of walink.toml and can change without a reload.
    pub credentials_file: Option<PathBuf>,
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.kind.scheme(), self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.kind.scheme(), self.host, self.port)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot read the proxy credentials file {}: {source}; it must hold one line `username:password` readable by walinkd", path.display())]
    CredentialsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the proxy credentials file {} is not one line `username:password`", path.display())]
    CredentialsFormat { path: PathBuf },
    #[error("talking to the proxy failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the proxy does not speak {expected} (unexpected reply); check the proxy URL's scheme and port"
    )]
    NotAProxy { expected: &'static str },
    #[error(
        "the proxy wants a username and password; add them to the proxy URL or proxy_credentials_file"
    )]
    AuthRequired,
    #[error("the proxy rejected the username/password; check the proxy credentials")]
    AuthRejected,
    #[error("the proxy could not reach {target}: {why}")]
    TargetUnreachable { target: String, why: String },
    #[error("the proxy refused to connect to {target}: HTTP {status}")]
    HttpRefused { target: String, status: String },
    #[error("the target host name {0:?} is too long for SOCKS5 (255 bytes at most)")]
    NameTooLong(String),
}

impl Proxy {
    /// Parses `socks5://[user:pass@]host:port` or `http://[user:pass@]host:port`.
    /// `socks5h://` is accepted as a synonym: names are always resolved by
    /// the proxy.
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let (kind, rest) = if let Some(rest) = url
            .strip_prefix("socks5://")
            .or_else(|| url.strip_prefix("socks5h://"))
        {
            (ProxyKind::Socks5, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (ProxyKind::Http, rest)
        } else {
            return Err(
                "must be socks5://HOST:PORT or http://HOST:PORT (optionally with USER:PASSWORD@ before the host)"
                    .into(),
            );
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('?') {
            return Err("must not have a path: socks5://HOST:PORT or http://HOST:PORT".into());
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, rest),
        };
        let credentials = userinfo
            .map(|u| {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                Ok::<_, String>(Credentials {
                    username: percent_decode(user)?,
                    password: percent_decode(pass)?,
                })
            })
            .transpose()?;
        let (host, port) = split_host_port(hostport)
            .ok_or("must name the proxy's host and port, e.g. socks5://127.0.0.1:1080")?;
        Ok(Proxy {
            kind,
            host,
            port,
            credentials,
            credentials_file: None,
        })
    }

    /// The credentials to offer: the file's when there is one, else the URL's.
    pub fn load_credentials(&self) -> Result<Option<Credentials>, ProxyError> {
        match &self.credentials_file {
            Some(path) => read_credentials_file(path).map(Some),
            None => Ok(self.credentials.clone()),
        }
    }

    /// Asks the proxy, already connected on `stream`, for a tunnel to
    /// `host:port`. The name is passed as is: the proxy resolves it.
    pub async fn handshake(
        &self,
        stream: &mut TcpStream,
        host: &str,
        port: u16,
    ) -> Result<(), ProxyError> {
        let credentials = self.load_credentials()?;
        match self.kind {
            ProxyKind::Socks5 => socks5(stream, host, port, credentials.as_ref()).await,
            ProxyKind::Http => http_connect(stream, host, port, credentials.as_ref()).await,
        }
    }
}

fn read_credentials_file(path: &Path) -> Result<Credentials, ProxyError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProxyError::CredentialsFile {
        path: path.to_owned(),
        source,
    })?;
    let line = text.trim_end_matches(['\n', '\r']);
    match line.split_once(':') {
        Some((user, pass)) if !user.is_empty() && !line.contains('\n') => Ok(Credentials {
            username: user.to_owned(),
            password: pass.to_owned(),
        }),
        _ => Err(ProxyError::CredentialsFormat {
            path: path.to_owned(),
        }),
    }
}

/// `host:port` or `[v6]:port`.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        text.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| (host.to_owned(), port))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a bad %-escape in the user or password")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "user or password is not UTF-8 once %-decoded".into())
}

async fn socks5(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
    credentials: Option<&Credentials>,
) -> Result<(), ProxyError> {
    const NOT_SOCKS: ProxyError = ProxyError::NotAProxy { expected: "SOCKS5" };
    // Methods offered: no authentication, and username/password when we have one.
    let greeting: &[u8] = if credentials.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    stream.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    read_exact_or(stream, &mut choice, NOT_SOCKS).await?;
    if choice[0] != 5 {
        return Err(NOT_SOCKS);
    }
    match (choice[1], credentials) {
        (0, _) => {}
        (2, Some(c)) => {
            let (user, pass) = (c.username.as_bytes(), c.password.as_bytes());
            if user.len() > 255 || pass.len() > 255 {
                return Err(ProxyError::AuthRejected);
            }
            let mut auth = vec![1, user.len() as u8];
            auth.extend_from_slice(user);
            auth.push(pass.len() as u8);
            auth.extend_from_slice(pass);
            stream.write_all(&auth).await?;
            let mut status = [0u8; 2];
            read_exact_or(stream, &mut status, NOT_SOCKS).await?;
            if status[1] != 0 {
                return Err(ProxyError::AuthRejected);
            }
        }
        (0xff, None) | (2, None) => return Err(ProxyError::AuthRequired),
        (0xff, Some(_)) => return Err(ProxyError::AuthRejected),
        _ => return Err(NOT_SOCKS),
    }
    let mut request = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = host.as_bytes();
            if name.len() > 255 {
                return Err(ProxyError::NameTooLong(host.to_owned()));
            }
            request.push(3);
            request.push(name.len() as u8);
            request.extend_from_slice(name);
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;
    let mut head = [0u8; 4];
    read_exact_or(stream, &mut head, NOT_SOCKS).await?;
    if head[0] != 5 {
        return Err(NOT_SOCKS);
    }
    if head[1] != 0 {
        return Err(ProxyError::TargetUnreachable {
            target: format!("{host}:{port}"),
            why: socks5_reply(head[1]).to_owned(),
        });
    }
    // The bound address the proxy reports is of no use to us; skip it.
    let skip = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            read_exact_or(stream, &mut len, NOT_SOCKS).await?;
            usize::from(len[0]) + 2
        }
        _ => return Err(NOT_SOCKS),
    };
    let mut rest = vec![0u8; skip];
    read_exact_or(stream, &mut rest, NOT_SOCKS).await?;
    Ok(())
}

fn socks5_reply(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by the proxy's rules",
        3 => "network unreachable",
        4 => "host unreachable (or its name did not resolve at the proxy)",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown SOCKS5 error",
    }
}

/// `read_exact`, with an early EOF reported as `eof` (a proxy hanging up
/// mid-handshake is the proxy's answer, not an I/O fault).
async fn read_exact_or(
    stream: &mut TcpStream,
    buf: &mut [u8],
    eof: ProxyError,
) -> Result<(), ProxyError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(eof),
        Err(e) => Err(e.into()),
    }
}

async fn http_connect(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
    credentials: Option<&Credentials>,
) -> Result<(), ProxyError> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = credentials {
        let token = base64(format!("{}:{}", c.username, c.password).as_bytes());
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    // Byte by byte up to the blank line: anything after it belongs to the tunnel.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_REPLY {
            return Err(ProxyError::NotAProxy {
                expected: "HTTP CONNECT",
            });
        }
        read_exact_or(
            stream,
            &mut byte,
            ProxyError::NotAProxy {
                expected: "HTTP CONNECT",
            },
        )
        .await?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next());
    if !version.starts_with("HTTP/1.") {
        return Err(ProxyError::NotAProxy {
            expected: "HTTP CONNECT",
        });
    }
    match code {
        Some(code) if code.starts_with('2') => Ok(()),
        Some("407") if credentials.is_some() => Err(ProxyError::AuthRejected),
        Some("407") => Err(ProxyError::AuthRequired),
        _ => Err(ProxyError::HttpRefused {
            target,
            status: status_line
                .split_once(' ')
                .map(|(_, s)| s)
                .unwrap_or(status_line)
                .to_owned(),
        }),
    }
}

/// Standard base64 with padding, for the Basic authorization header.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("socks5://ann:s%40cret@proxy.example:1080").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5);
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 1080));
        let c = p.credentials.clone().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("ann", "s@cret")
        );
        assert_eq!(p.to_string(), "socks5://proxy.example:1080");
        assert!(
            !format!("{p:?}").contains("s@cret"),
            "Debug hides the password"
        );

        let p = Proxy::parse("http://[::1]:3128/").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::Http, "::1", 3128)
        );
        assert_eq!(p.to_string(), "http://[::1]:3128");

        for bad in [
            "https://p:1",
            "socks5://p",
            "socks5://p:0",
            "socks5://:80",
            "http://p:80/x",
        ] {
            assert!(Proxy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn credentials_file_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cred");
        std::fs::write(&path, "bob:pa:ss\n").unwrap();
        let c = read_credentials_file(&path).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pa:ss"));
        std::fs::write(&path, "nocolon\n").unwrap();
        assert!(matches!(
            read_credentials_file(&path),
            Err(ProxyError::CredentialsFormat { .. })
        ));
        let err = read_credentials_file(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("username:password"), "{err}");
    }
}
