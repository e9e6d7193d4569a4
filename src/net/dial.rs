//! Opening the TCP stream to WhatsApp: name resolution, the IP family
//! policy, happy eyeballs, and an optional proxy in between.
//!
//! Cloud servers often have an IPv6 route that black-holes or a resolver that
//! is slow; trying the families in turn with a short head start each
//! (RFC 8305 style) and remembering which one worked keeps a broken family
//! from costing a full connect timeout on every reconnect.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::proxy::{Proxy, ProxyError};

/// Head start of one connection attempt before the next address is tried
/// in parallel (RFC 8305 recommends 250 ms).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Which address families walink dials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// Both, racing them and preferring the one that worked last.
    #[default]
    Auto,
    Ipv4,
    Ipv6,
}

impl IpFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::Auto => "auto",
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
        }
    }

    /// Whether addresses of this kind may be dialed.
    pub fn allows(self, addr: &SocketAddr) -> bool {
        match self {
            IpFamily::Auto => true,
            IpFamily::Ipv4 => addr.is_ipv4(),
            IpFamily::Ipv6 => addr.is_ipv6(),
        }
    }
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(
        "cannot resolve {host}: {source}; check the host name and the DNS servers in /etc/resolv.conf"
    )]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "resolving {host} took longer than {after:?}; the DNS servers in /etc/resolv.conf are slow or unreachable"
    )]
    ResolveTimeout { host: String, after: Duration },
    #[error("{host} has no {family} address; set ip_family = \"auto\" or check the network")]
    NoAddress { host: String, family: &'static str },
    #[error("cannot connect to {}", describe_attempts(.0))]
    Connect(Vec<(SocketAddr, io::Error)>),
    #[error("connecting to {target} timed out after {after:?}; a firewall may drop the packets")]
    Timeout { target: String, after: Duration },
    #[error("cannot reach the proxy {proxy}: {source}")]
    ProxyUnreachable {
        proxy: String,
        #[source]
        source: Box<DialError>,
    },
    #[error("proxy {proxy}: {source}")]
    Proxy {
        proxy: String,
        #[source]
        source: ProxyError,
    },
}

fn describe_attempts(attempts: &[(SocketAddr, io::Error)]) -> String {
    attempts
        .iter()
        .map(|(addr, e)| format!("{addr} ({e})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves `host` (A and AAAA together, as getaddrinfo does), bounded by
/// `timeout`: the system resolver can otherwise hang for its own retries.
pub async fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, DialError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = tokio::net::lookup_host((host.to_owned(), port));
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(source)) => Err(DialError::Resolve {
            host: host.to_owned(),
            source,
        }),
        Err(_) => Err(DialError::ResolveTimeout {
            host: host.to_owned(),
            after: timeout,
        }),
    }
}

/// Orders addresses for happy eyeballs: alternating families, `first_v6`
/// deciding which family leads.
pub fn interleave(addrs: &[SocketAddr], first_v6: bool) -> Vec<SocketAddr> {
    let (mut lead, mut follow): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6() == first_v6);
    lead.reverse();
    follow.reverse();
    let mut out = Vec::with_capacity(addrs.len());
    while !lead.is_empty() || !follow.is_empty() {
        out.extend(lead.pop());
        out.extend(follow.pop());
    }
    out
}

/// Connects to the first address that answers, giving each a head start of
/// [`ATTEMPT_DELAY`] before the next one is tried alongside it.
pub async fn race(addrs: &[SocketAddr]) -> Result<(TcpStream, SocketAddr), DialError> {
    let mut next = addrs.iter().copied();
    let mut pending = FuturesUnordered::new();
    let mut failed = Vec::new();
    let attempt = |addr: SocketAddr| async move { (addr, TcpStream::connect(addr).await) };
    loop {
        if pending.is_empty() {
            match next.next() {
                Some(addr) => pending.push(attempt(addr)),
                None => return Err(DialError::Connect(failed)),
            }
        }
        let more = next.len() > 0;
        tokio::select! {
            Some((addr, result)) = pending.next() => match result {
                Ok(stream) => {
                    // Nagle off: the library writes a stanza as several small
                    // frames, and with Nagle each later one waits for the
                    // peer's delayed ACK (40 ms on Linux), which was most of
                    // a send's round trip.
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Err(e) => {
                    failed.push((addr, e));
                    if let Some(addr) = next.next() {
                        pending.push(attempt(addr));
                    }
                }
            },
            _ = tokio::time::sleep(ATTEMPT_DELAY), if more => {
                if let Some(addr) = next.next() {
                    pending.push(attempt(addr));
                }
            }
        }
    }
}

/// Dials one host:port under a family policy and an optional proxy.
/// Clones share what they learned about which family works.
#[derive(Debug, Clone)]
pub struct Dialer {
    pub family: IpFamily,
    pub proxy: Option<Proxy>,
    pub timeout: Duration,
    /// `Some(true)` when IPv6 worked last, `Some(false)` for IPv4.
    worked_last: Arc<Mutex<Option<bool>>>,
}

impl Dialer {
    pub fn new(family: IpFamily, proxy: Option<Proxy>, timeout: Duration) -> Dialer {
        Dialer {
            family,
            proxy,
            timeout,
            worked_last: Arc::default(),
        }
    }

    /// A TCP stream to `host:port`, through the proxy when there is one.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        match &self.proxy {
            None => self.direct(host, port).await.map(|(s, _)| s),
            Some(proxy) => {
                // The family policy is about the path to WhatsApp, which the
                // proxy dials; the proxy itself is reached however works.
                let to_proxy = Dialer {
                    family: IpFamily::Auto,
                    ..self.clone()
                };
                let mut stream = to_proxy
                    .direct(&proxy.host, proxy.port)
                    .await
                    .map_err(|e| DialError::ProxyUnreachable {
                        proxy: proxy.to_string(),
                        source: Box::new(e),
                    })?
                    .0;
                let handshake = proxy.handshake(&mut stream, host, port);
                match tokio::time::timeout(self.timeout, handshake).await {
                    Ok(Ok(())) => Ok(stream),
                    Ok(Err(source)) => Err(DialError::Proxy {
                        proxy: proxy.to_string(),
                        source,
                    }),
                    Err(_) => Err(DialError::Timeout {
                        target: format!("{host}:{port} through {proxy}"),
                        after: self.timeout,
                    }),
                }
            }
        }
    }

    /// Resolves and races `host`'s addresses of the allowed families.
    pub async fn direct(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr), DialError> {
        let addrs = resolve(host, port, self.timeout).await?;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| self.family.allows(a))
            .collect();
        if allowed.is_empty() {
            return Err(DialError::NoAddress {
                host: host.to_owned(),
                family: match self.family {
                    IpFamily::Ipv4 => "IPv4",
                    IpFamily::Ipv6 => "IPv6",
                    IpFamily::Auto => "IP",
                },
            });
        }
        let first_v6 = self
            .worked_last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(true);
        let order = interleave(&allowed, first_v6);
        let (stream, addr) = tokio::time::timeout(self.timeout, race(&order))
            .await
            .map_err(|_| DialError::Timeout {
                target: format!("{host}:{port}"),
                after: self.timeout,
            })??;
        *self.worked_last.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr.is_ipv6());
        Ok((stream, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn interleave_alternates_starting_with_the_preferred_family() {
        let addrs = [a("1.1.1.1:1"), a("2.2.2.2:1"), a("[::1]:1"), a("[::2]:1")];
        assert_eq!(
            interleave(&addrs, true),
            [a("[::1]:1"), a("1.1.1.1:1"), a("[::2]:1"), a("2.2.2.2:1")]
        );
        assert_eq!(
            interleave(&addrs, false),
            [a("1.1.1.1:1"), a("[::1]:1"), a("2.2.2.2:1"), a("[::2]:1")]
        );
    }

    #[tokio::test]
    async fn race_skips_a_refusing_address_and_remembers_the_family() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (_, addr) = race(&[closed, a(&format!("127.0.0.1:{port}"))])
            .await
            .unwrap();
        assert_eq!(addr.port(), port);
        match race(&[closed]).await {
            Err(DialError::Connect(failed)) => assert_eq!(failed[0].0, closed),
            other => panic!("expected a refusal, got {other:?}"),
        }

        // An address that never answers (TEST-NET-1) gets only a head start:
        // the next address is tried alongside it and wins.
        let black_hole = a("192.0.2.1:9");
        let started = std::time::Instant::now();
        let (_, addr) = tokio::time::timeout(
            Duration::from_secs(5),
            race(&[black_hole, a(&format!("127.0.0.1:{port}"))]),
        )
        .await
        .expect("not held up by the silent address")
        .unwrap();
        assert_eq!(addr.port(), port);
        assert!(started.elapsed() < Duration::from_secs(2));

        let dialer = Dialer::new(IpFamily::Auto, None, Duration::from_secs(5));
        dialer.connect("127.0.0.1", port).await.unwrap();
        assert_eq!(*dialer.worked_last.lock().unwrap(), Some(false));
        let v6_only = Dialer::new(IpFamily::Ipv6, None, Duration::from_secs(5));
        let err = v6_only.connect("127.0.0.1", port).await.unwrap_err();
        assert!(err.to_string().contains("no IPv6 address"), "{err}");
    }
}
