//! A real SOCKS5 / HTTP CONNECT proxy on loopback for the tests: it
//! authenticates, resolves names itself (from a table, so a name that does
//! not resolve locally proves remote DNS), relays bytes both ways, and
//! records every tunnel it opened.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Socks5,
    Http,
}

/// One tunnel request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `host:port` as the client asked for it (a name, not an address, with
    /// remote DNS).
    pub target: String,
    /// SOCKS5 username, or the HTTP `Proxy-Authorization` value.
    pub credentials: Option<String>,
    /// Whether the proxy let the tunnel through.
    pub granted: bool,
}

pub struct TestProxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Rules {
    kind: Kind,
    /// SOCKS5: (user, password); HTTP: the whole `Proxy-Authorization` value.
    user: Option<(String, String)>,
    names: HashMap<String, SocketAddr>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestProxy {
    /// `user`: credentials the proxy requires. `names`: host names it resolves.
    pub async fn start(
        kind: Kind,
        user: Option<(&str, &str)>,
        names: &[(&str, SocketAddr)],
    ) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rules = Rules {
            kind,
            user: user.map(|(u, p)| (u.to_owned(), p.to_owned())),
            names: names.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            seen: seen.clone(),
        };
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rules = rules.clone();
                tokio::spawn(async move {
                    let _ = serve(client, &rules).await;
                });
            }
        });
        TestProxy { addr, seen, task }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Tunnels that were let through.
    pub fn granted(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.granted).collect()
    }
}

fn resolve(rules: &Rules, host: &str, port: u16) -> Option<SocketAddr> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, port)),
        Err(_) => rules.names.get(host).map(|a| SocketAddr::new(a.ip(), port)),
    }
}

async fn serve(mut client: TcpStream, rules: &Rules) -> std::io::Result<()> {
    let (target, credentials, upstream) = match rules.kind {
        Kind::Socks5 => socks5(&mut client, rules).await?,
        Kind::Http => http(&mut client, rules).await?,
    };
    let granted = upstream.is_some();
    rules.seen.lock().unwrap().push(Seen {
        target,
        credentials,
        granted,
    });
    if let Some(mut upstream) = upstream {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
    Ok(())
}

type Outcome = (String, Option<String>, Option<TcpStream>);

async fn socks5(client: &mut TcpStream, rules: &Rules) -> std::io::Result<Outcome> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    let mut credentials = None;
    match &rules.user {
        Some((user, pass)) => {
            if !methods.contains(&2) {
                client.write_all(&[5, 0xff]).await?;
                return Ok((String::new(), None, None));
            }
            client.write_all(&[5, 2]).await?;
            let mut ver_len = [0u8; 2];
            client.read_exact(&mut ver_len).await?;
            let mut u = vec![0u8; usize::from(ver_len[1])];
            client.read_exact(&mut u).await?;
            let mut plen = [0u8; 1];
            client.read_exact(&mut plen).await?;
            let mut p = vec![0u8; usize::from(plen[0])];
            client.read_exact(&mut p).await?;
            let u = String::from_utf8_lossy(&u).into_owned();
            let ok = u == *user && p == pass.as_bytes();
            credentials = Some(u);
            client.write_all(&[1, if ok { 0 } else { 1 }]).await?;
            if !ok {
                return Ok((String::new(), credentials, None));
            }
        }
        None => client.write_all(&[5, 0]).await?,
    }
    let mut req = [0u8; 4];
    client.read_exact(&mut req).await?;
    let host = match req[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            std::net::Ipv6Addr::from(ip).to_string()
        }
        _ => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    let target = format!("{host}:{port}");
    let upstream = match resolve(rules, &host, port) {
        Some(addr) => TcpStream::connect(addr).await.ok(),
        None => None,
    };
    // 4: host unreachable (covers "name does not resolve here").
    let code = if upstream.is_some() { 0 } else { 4 };
    client.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    Ok((target, credentials, upstream))
}

async fn http(client: &mut TcpStream, rules: &Rules) -> std::io::Result<Outcome> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        client.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("CONNECT "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default()
        .to_owned();
    let credentials = text
        .lines()
        .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
        .map(str::to_owned);
    if let Some((want, _)) = &rules.user
        && credentials.as_deref() != Some(want.as_str())
    {
        client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok((target, credentials, None));
    }
    let upstream = match target.rsplit_once(':') {
        Some((host, port)) => match port.parse().ok().and_then(|p| resolve(rules, host, p)) {
            Some(addr) => TcpStream::connect(addr).await.ok(),
            None => None,
        },
        None => None,
    };
    let reply: &[u8] = if upstream.is_some() {
        b"HTTP/1.1 200 Connection established\r\n\r\n"
    } else {
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
    };
    client.write_all(reply).await?;
    Ok((target, credentials, upstream))
}
