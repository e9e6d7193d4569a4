//! `walink diagnose`: the steps of a connection to WhatsApp run one at a
//! time, each timed and judged on its own, so an operator sees *where* the
//! path breaks (DNS, a family's route, TLS interception, a wrong path, a
//! proxy that lets the upgrade through but not the traffic) and what to try.
//!
//! The probe stops after the server's Noise hello: it proves a WhatsApp
//! server answers, without logging in or touching any account's keys.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::Message;
use wacore::framing::{FrameDecoder, encode_frame};
use wacore::libsignal::protocol::KeyPair;
use wacore::noise::XxHandshakeState;
use wacore_binary::consts::WA_CONN_HEADER;

use super::session::ConnectionSettings;
use super::transport::{Endpoint, WsStream, upgrade_request};
use super::version;
use crate::net::dial::{interleave, race, resolve};
use crate::net::{DialError, IpFamily, ProxyError, tls};

/// A certificate expiring sooner than this is worth a warning.
const CERT_EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    /// Passed, with something worth knowing (one family failed, a
    /// certificate expires soon).
    Warning,
    Failed,
    /// Not run: not applicable, or an earlier step failed.
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Warning => "warning",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnoseStep {
    /// `dns`, `proxy`, `tcp_ipv4`, `tcp_ipv6`, `tls`, `websocket`, `noise`
    /// or `http` (the WhatsApp Web version page).
    pub step: String,
    pub status: StepStatus,
    /// How long the step took; `null` when it did not run.
    pub duration_ms: Option<u64>,
    /// What happened, in one sentence.
    pub detail: String,
    /// What it means and what to try, when the step failed or warned.
    pub hint: Option<String>,
}

/// Result of `diagnose`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnoseReport {
    /// The account whose settings (proxy) were used; `null`: the daemon's.
    pub account: Option<String>,
    pub url: String,
    /// `scheme://host:port` of the proxy, never its credentials.
    pub proxy: Option<String>,
    pub ip_family: IpFamily,
    /// True when no step failed.
    pub ok: bool,
    /// One sentence: all good, or which step failed and why.
    pub verdict: String,
    pub steps: Vec<DiagnoseStep>,
}

impl DiagnoseReport {
    /// The first failed step, if any.
    pub fn failure(&self) -> Option<&DiagnoseStep> {
        self.steps.iter().find(|s| s.status == StepStatus::Failed)
    }
}

struct Steps {
    steps: Vec<DiagnoseStep>,
}

impl Steps {
    fn push(
        &mut self,
        step: &str,
        status: StepStatus,
        took: Option<Duration>,
        detail: impl Into<String>,
        hint: Option<String>,
    ) {
        self.steps.push(DiagnoseStep {
            step: step.to_owned(),
            status,
            duration_ms: took.map(|d| d.as_millis() as u64),
            detail: detail.into(),
            hint,
        });
    }

    fn skip(&mut self, step: &str, why: impl Into<String>) {
        self.push(step, StepStatus::Skipped, None, why, None);
    }

    /// Marks the steps that can no longer run after a failure.
    fn skip_rest(&mut self, steps: &[&str]) {
        for step in steps {
            self.skip(step, "not run: an earlier step failed");
        }
    }
}

/// Runs every step against `settings`; never fails, the report says what did.
pub async fn diagnose(settings: &ConnectionSettings, account: Option<&str>) -> DiagnoseReport {
    let mut steps = Steps { steps: Vec::new() };
    let started = Instant::now();
    if let Ok(endpoint) = Endpoint::parse(&settings.url) {
        run(settings, &endpoint, &mut steps).await;
    } else {
        steps.push(
            "dns",
            StepStatus::Failed,
            None,
            format!("{:?} is not a ws:// or wss:// URL", settings.url),
            Some("fix connection.url in walink.toml".into()),
        );
    }
    version_page(settings, &mut steps).await;
    let failure = steps.steps.iter().find(|s| s.status == StepStatus::Failed);
    let verdict = match failure {
        None => format!(
            "WhatsApp's server answered: every step passed in {} ms",
            started.elapsed().as_millis()
        ),
        Some(step) => format!("{} failed: {}", step.step, step.detail),
    };
    DiagnoseReport {
        account: account.map(str::to_owned),
        url: settings.url.clone(),
        proxy: settings.proxy.as_ref().map(|p| p.to_string()),
        ip_family: settings.ip_family,
        ok: failure.is_none(),
        verdict,
        steps: steps.steps,
    }
}

async fn run(settings: &ConnectionSettings, endpoint: &Endpoint, steps: &mut Steps) {
    let timeout = settings.connect_timeout;
    let host = endpoint.host.as_str();
    let tcp = match &settings.proxy {
        Some(proxy) => {
            steps.skip("dns", format!("{host} is resolved by the proxy {proxy}"));
            let start = Instant::now();
            match settings.dialer().connect(host, endpoint.port).await {
                Ok(stream) => {
                    steps.push(
                        "proxy",
                        StepStatus::Ok,
                        Some(start.elapsed()),
                        format!("{proxy} opened a tunnel to {host}:{}", endpoint.port),
                        None,
                    );
                    stream
                }
                Err(e) => {
                    let hint = proxy_hint(&e);
                    steps.push(
                        "proxy",
                        StepStatus::Failed,
                        Some(start.elapsed()),
                        e.to_string(),
                        Some(hint),
                    );
                    steps.skip_rest(&["tls", "websocket", "noise"]);
                    return;
                }
            }
        }
        None => {
            let start = Instant::now();
            let addrs = match resolve(host, endpoint.port, timeout).await {
                Ok(addrs) => addrs,
                Err(e) => {
                    let hint = match &e {
                        DialError::ResolveTimeout { .. } => format!(
                            "the resolver did not answer in time: check the nameservers in /etc/resolv.conf (`getent hosts {host}` should answer at once)"
                        ),
                        _ => format!(
                            "the name does not resolve: check the host in connection.url, then the nameservers in /etc/resolv.conf (`getent hosts {host}`)"
                        ),
                    };
                    steps.push(
                        "dns",
                        StepStatus::Failed,
                        Some(start.elapsed()),
                        e.to_string(),
                        Some(hint),
                    );
                    steps.skip_rest(&["tcp_ipv4", "tcp_ipv6", "tls", "websocket", "noise"]);
                    return;
                }
            };
            let list = |v6: bool| {
                let found: Vec<String> = addrs
                    .iter()
                    .filter(|a| a.is_ipv6() == v6)
                    .map(|a| a.ip().to_string())
                    .collect();
                if found.is_empty() {
                    "none".to_owned()
                } else {
                    found.join(" ")
                }
            };
            let detail = if host.parse::<std::net::IpAddr>().is_ok() {
                format!("{host} is an IP address; nothing to resolve")
            } else {
                format!("{host}: A {}; AAAA {}", list(false), list(true))
            };
            steps.push("dns", StepStatus::Ok, Some(start.elapsed()), detail, None);
            match connect_families(settings.ip_family, &addrs, timeout, steps).await {
                Some(stream) => stream,
                None => {
                    steps.skip_rest(&["tls", "websocket", "noise"]);
                    return;
                }
            }
        }
    };

    let stream = if endpoint.tls {
        let start = Instant::now();
        match tls::connect(tcp, host, timeout).await {
            Ok((stream, cert)) => {
                let (status, detail, hint) = describe_cert(cert.as_ref());
                steps.push("tls", status, Some(start.elapsed()), detail, hint);
                MaybeTlsStream::Rustls(stream)
            }
            Err(e) => {
                let hint = if e.is_certificate_problem() {
                    format!(
                        "the server's certificate is not trusted: a firewall or proxy may intercept TLS, or this machine's clock is wrong (it says {})",
                        tls::date_of(now_unix())
                    )
                } else {
                    "the port does not speak TLS, or something in between cut the handshake: use ws:// for a plain port, and check for a firewall or proxy that interferes".to_owned()
                };
                steps.push(
                    "tls",
                    StepStatus::Failed,
                    Some(start.elapsed()),
                    e.to_string(),
                    Some(hint),
                );
                steps.skip_rest(&["websocket", "noise"]);
                return;
            }
        }
    } else {
        steps.skip("tls", "not used (ws://)");
        MaybeTlsStream::Plain(tcp)
    };

    let start = Instant::now();
    let mut ws = match websocket(endpoint, stream, timeout).await {
        Ok(ws) => {
            steps.push(
                "websocket",
                StepStatus::Ok,
                Some(start.elapsed()),
                "upgraded to a WebSocket (HTTP 101)",
                None,
            );
            ws
        }
        Err((detail, hint)) => {
            steps.push(
                "websocket",
                StepStatus::Failed,
                Some(start.elapsed()),
                detail,
                Some(hint),
            );
            steps.skip_rest(&["noise"]);
            return;
        }
    };

    let start = Instant::now();
    let outcome = noise_hello(&mut ws, timeout).await;
    let took = Some(start.elapsed());
    match outcome {
        Ok(()) => steps.push(
            "noise",
            StepStatus::Ok,
            took,
            "the server answered the Noise hello and its certificate chain verified",
            None,
        ),
        Err((detail, hint)) => steps.push("noise", StepStatus::Failed, took, detail, Some(hint)),
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// The `http` step: the version fetch every unpinned connect relies on,
/// through the same HTTP client (proxy, family, timeouts) the account uses.
async fn version_page(settings: &ConnectionSettings, steps: &mut Steps) {
    if steps.steps.iter().any(|s| s.status == StepStatus::Failed) {
        steps.skip("http", "not run: an earlier step failed");
        return;
    }
    if let Some((p, s, t)) = settings.client_version {
        steps.skip(
            "http",
            format!("connection.client_version pins {p}.{s}.{t}: the version page is not used"),
        );
        return;
    }
    let start = Instant::now();
    match version::fetch(&settings.http_client()).await {
        Ok((p, s, t)) => steps.push(
            "http",
            StepStatus::Ok,
            Some(start.elapsed()),
            format!("{} names WhatsApp Web {p}.{s}.{t}", version::SW_URL),
            None,
        ),
        Err(e) => steps.push(
            "http",
            StepStatus::Failed,
            Some(start.elapsed()),
            e,
            Some(
                "walink connects anyway, with the last version that worked (or its built-in one); \
                 check that the proxy or firewall lets HTTPS to web.whatsapp.com through, or pin \
                 connection.client_version"
                    .into(),
            ),
        ),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn describe_cert(cert: Option<&tls::CertInfo>) -> (StepStatus, String, Option<String>) {
    let Some(cert) = cert else {
        return (
            StepStatus::Ok,
            "handshake done; the certificate verified (its details could not be read)".into(),
            None,
        );
    };
    let left = cert.not_after - now_unix();
    let detail = format!(
        "certificate {} valid until {}",
        cert.subject,
        tls::date_of(cert.not_after)
    );
    if left < CERT_EXPIRY_WARNING_SECS {
        (
            StepStatus::Warning,
            detail,
            Some("the certificate expires within two weeks; if this is not WhatsApp's own server, renew it".into()),
        )
    } else {
        (StepStatus::Ok, detail, None)
    }
}

fn proxy_hint(e: &DialError) -> String {
    match e {
        DialError::ProxyUnreachable { .. } => {
            "the proxy itself cannot be reached: check its host and port in the proxy setting, and that it runs".into()
        }
        DialError::Proxy { source, .. } => match source {
            ProxyError::AuthRequired | ProxyError::AuthRejected => {
                "fix the proxy credentials (in the proxy URL or proxy_credentials_file)".into()
            }
            ProxyError::CredentialsFile { .. } | ProxyError::CredentialsFormat { .. } => {
                "fix proxy_credentials_file: one line `username:password`, readable by walinkd".into()
            }
            ProxyError::NotAProxy { .. } => {
                "the address answers but not as this kind of proxy: check socks5:// versus http:// and the port".into()
            }
            _ => "the proxy is up but cannot reach WhatsApp: check the proxy's own network and rules".into(),
        },
        _ => "the proxy did not answer in time: check that it runs and that nothing drops traffic to it".into(),
    }
}

/// One TCP step per family; returns a stream from a family that worked.
async fn connect_families(
    policy: IpFamily,
    addrs: &[SocketAddr],
    timeout: Duration,
    steps: &mut Steps,
) -> Option<TcpStream> {
    let allowed = |v6: bool| match policy {
        IpFamily::Auto => true,
        IpFamily::Ipv4 => !v6,
        IpFamily::Ipv6 => v6,
    };
    let of_family = |v6: bool| -> Vec<SocketAddr> {
        addrs
            .iter()
            .copied()
            .filter(|a| a.is_ipv6() == v6)
            .collect()
    };
    // Both families at once: a black-holed one then costs one timeout, not
    // one on top of the other's.
    let probe = |v6: bool| {
        let mine = of_family(v6);
        async move {
            if !allowed(v6) || mine.is_empty() {
                return None;
            }
            let start = Instant::now();
            let result = tokio::time::timeout(timeout, race(&interleave(&mine, v6))).await;
            Some((result, start.elapsed()))
        }
    };
    let (v4_probe, v6_probe) = tokio::join!(probe(false), probe(true));
    let mut probes = [v4_probe, v6_probe].into_iter();
    let mut outcomes = Vec::new();
    for (v6, step, label, record) in [
        (false, "tcp_ipv4", "IPv4", "A"),
        (true, "tcp_ipv6", "IPv6", "AAAA"),
    ] {
        let probed = probes.next().flatten();
        let mine = of_family(v6);
        let allowed = allowed(v6);
        if !allowed {
            steps.skip(
                step,
                format!("ip_family = \"{policy}\": {label} is not used"),
            );
            outcomes.push((step, None));
            continue;
        }
        if mine.is_empty() {
            // Fine while the other family has addresses to try; a failure
            // when this family was the only hope.
            let other_exists = policy == IpFamily::Auto && addrs.iter().any(|a| a.is_ipv6() != v6);
            if other_exists {
                steps.skip(step, format!("no {record} record, so no {label} to try"));
            } else {
                steps.push(
                    step,
                    StepStatus::Failed,
                    None,
                    format!("no {record} record, so no {label} address to connect to"),
                    Some(format!(
                        "ip_family = \"{policy}\" leaves nothing to dial: set ip_family = \"auto\", or check the host's DNS records"
                    )),
                );
            }
            outcomes.push((step, None));
            continue;
        }
        let Some((result, took)) = probed else {
            continue;
        };
        let took = Some(took);
        match result {
            Ok(Ok((stream, addr))) => {
                steps.push(
                    step,
                    StepStatus::Ok,
                    took,
                    format!("connected to {addr}"),
                    None,
                );
                outcomes.push((step, Some(stream)));
            }
            Ok(Err(e)) => {
                let refused = matches!(&e, DialError::Connect(f) if f.iter().all(|(_, e)| e.kind() == std::io::ErrorKind::ConnectionRefused));
                let hint = if refused {
                    "nothing accepts connections on that port: check the port in connection.url, or a firewall rejects it".to_owned()
                } else {
                    format!(
                        "no working {label} route: check the network, or set ip_family to the other family"
                    )
                };
                steps.push(step, StepStatus::Failed, took, e.to_string(), Some(hint));
                outcomes.push((step, None));
            }
            Err(_) => {
                steps.push(
                    step,
                    StepStatus::Failed,
                    took,
                    format!("no answer within {timeout:?}"),
                    Some(format!(
                        "packets to {label} addresses are dropped (a firewall, or a broken {label} route, common for IPv6 on VPSes); set ip_family to the other family"
                    )),
                );
                outcomes.push((step, None));
            }
        }
    }
    let working: Vec<usize> = (0..outcomes.len())
        .filter(|i| outcomes[*i].1.is_some())
        .collect();
    if working.is_empty() {
        return None;
    }
    // One family is enough: the other's failure becomes a warning, since
    // walink falls back to the family that works.
    for step in steps.steps.iter_mut() {
        if step.step.starts_with("tcp_") && step.status == StepStatus::Failed {
            step.status = StepStatus::Warning;
            let other = if step.step == "tcp_ipv6" {
                "ipv4"
            } else {
                "ipv6"
            };
            step.hint = Some(format!(
                "{} walink falls back to the other family; set ip_family = \"{other}\" to skip this one",
                step.hint.take().unwrap_or_default()
            ));
        }
    }
    // Prefer IPv6 as the dialer does when both work.
    let pick = *working.last()?;
    outcomes.swap_remove(pick).1
}

async fn websocket(
    endpoint: &Endpoint,
    stream: MaybeTlsStream<TcpStream>,
    timeout: Duration,
) -> Result<WsStream, (String, String)> {
    let request = upgrade_request(&endpoint.url)
        .map_err(|e| (format!("bad URL: {e}"), "fix connection.url".to_owned()))?;
    let path = endpoint
        .url
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap_or_else(|| "/".into());
    match tokio::time::timeout(timeout, tokio_tungstenite::client_async(request, stream)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(response))) => {
            let status = response.status();
            let hint = match status.as_u16() {
                404 => format!(
                    "nothing serves a WebSocket at {path}: check the path in connection.url (WhatsApp's is /ws/chat)"
                ),
                401 | 403 | 407 => "the server or something in between refuses this client: a firewall or filtering proxy may block WhatsApp".to_owned(),
                500..=599 => "the server is in trouble or overloaded; walink retries with backoff, try again later".to_owned(),
                _ => "the server did not accept the WebSocket upgrade; check connection.url".to_owned(),
            };
            Err((
                format!("the server answered HTTP {status} instead of upgrading {path}"),
                hint,
            ))
        }
        Ok(Err(e)) => Err((
            format!("the WebSocket upgrade failed: {e}"),
            "the server did not answer like a web server: check the port and scheme in connection.url".to_owned(),
        )),
        Err(_) => Err((
            format!("no answer to the upgrade request within {timeout:?}"),
            "the server accepts TCP but does not answer HTTP: check the port and scheme (ws:// or wss://)".to_owned(),
        )),
    }
}

/// Sends the connection header and a Noise XX client hello, and waits for
/// the server hello, which must decrypt and carry a WhatsApp-signed chain.
async fn noise_hello(ws: &mut WsStream, timeout: Duration) -> Result<(), (String, String)> {
    let internal = |what: String| (what, "this is a bug in walink; please report it".to_owned());
    // Throwaway keys: the probe must never use an account's identity.
    let static_kp = KeyPair::generate(&mut rand::rng());
    let mut handshake = XxHandshakeState::new(static_kp, Vec::new(), &WA_CONN_HEADER)
        .map_err(|e| internal(format!("cannot start a Noise handshake: {e}")))?;
    let hello = handshake
        .build_client_hello()
        .map_err(|e| internal(format!("cannot build the client hello: {e}")))?;
    let frame = encode_frame(&hello, Some(&WA_CONN_HEADER))
        .map_err(|e| internal(format!("cannot frame the client hello: {e}")))?;
    ws.send(Message::Binary(frame.into())).await.map_err(|e| {
        (
            format!("sending the client hello failed: {e}"),
            "the connection broke right after the upgrade: a proxy or firewall may cut WebSocket traffic".to_owned(),
        )
    })?;
    let silent = || {
        (
            format!("the server did not answer the Noise hello within {timeout:?}"),
            "the WebSocket opened but nothing came back: a proxy or firewall that passes the upgrade but not the traffic, or a server that is not WhatsApp".to_owned(),
        )
    };
    let mut decoder = FrameDecoder::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let reply = loop {
        if let Some(frame) = decoder.decode_frame() {
            break frame;
        }
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(silent()),
            Ok(Some(Ok(Message::Binary(data)))) => decoder.feed(&data),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) => {
                return Err((
                    "the server closed the connection instead of answering the Noise hello".into(),
                    "the server refuses this client: the address may be blocked, or the endpoint is not WhatsApp".into(),
                ));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                return Err((
                    format!("the connection failed while waiting for the server hello: {e}"),
                    "something in between cut the connection; check proxies and firewalls".into(),
                ));
            }
        }
    };
    handshake
        .read_server_hello_and_build_client_finish(&reply)
        .map(|_| ())
        .map_err(|e| {
            (
                format!("the server hello is not valid: {e}"),
                "the server is not WhatsApp's (or its traffic is intercepted): check connection.url and any proxy".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_working_family_turns_the_other_failure_into_a_warning() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        // Refused where ::1 exists, unreachable where it does not: a failure either way.
        let closed_v6: SocketAddr = "[::1]:1".parse().unwrap();
        let mut steps = Steps { steps: Vec::new() };
        let stream = connect_families(
            IpFamily::Auto,
            &[closed_v6, open],
            Duration::from_secs(2),
            &mut steps,
        )
        .await;
        assert!(stream.is_some(), "IPv4 works");
        let [v4, v6] = &steps.steps[..] else {
            panic!("{:?}", steps.steps)
        };
        assert_eq!((v4.step.as_str(), v4.status), ("tcp_ipv4", StepStatus::Ok));
        assert_eq!(
            (v6.step.as_str(), v6.status),
            ("tcp_ipv6", StepStatus::Warning)
        );
        assert!(
            v6.hint.as_deref().unwrap().contains("ip_family = \"ipv4\""),
            "{v6:?}"
        );

        let mut steps = Steps { steps: Vec::new() };
        let stream = connect_families(
            IpFamily::Auto,
            &[closed_v6],
            Duration::from_secs(2),
            &mut steps,
        )
        .await;
        assert!(stream.is_none());
        assert_eq!(steps.steps[0].status, StepStatus::Skipped, "no A record");
        assert_eq!(
            steps.steps[1].status,
            StepStatus::Failed,
            "the only family failed"
        );
    }
}
