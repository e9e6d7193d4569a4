//! TLS on top of a dialed stream (rustls with the webpki roots, as
//! tokio-tungstenite would do it), done here so the transport can dial
//! through a proxy first and `diagnose` can show the server certificate.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0:?} is not a valid TLS server name")]
    BadName(String),
    #[error("the TLS handshake with {host} failed: {source}")]
    Handshake {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS handshake with {host} timed out after {after:?}")]
    Timeout { host: String, after: Duration },
}

impl TlsError {
    /// Whether the server's certificate was refused (as opposed to the
    /// handshake failing for lack of a TLS server).
    pub fn is_certificate_problem(&self) -> bool {
        matches!(self, TlsError::Handshake { source, .. } if source.to_string().contains("certificate"))
    }
}

/// What the server's certificate says, for `diagnose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// e.g. `CN=*.whatsapp.net, O=Meta Platforms, Inc.`
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
}

fn config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                // The ring provider supports the default versions; this
                // branch exists only because the builder API is fallible.
                .unwrap_or_else(|_| {
                    ClientConfig::builder()
                        .with_root_certificates(RootCertStore::empty())
                        .with_no_client_auth()
                });
            Arc::new(config)
        })
        .clone()
}

/// Runs the TLS handshake for `host` on `stream`, bounded by `timeout`.
pub async fn connect(
    stream: TcpStream,
    host: &str,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, Option<CertInfo>), TlsError> {
    let name = ServerName::try_from(host.to_owned()).map_err(|_| TlsError::BadName(host.into()))?;
    let handshake = TlsConnector::from(config()).connect(name, stream);
    let tls = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| TlsError::Timeout {
            host: host.to_owned(),
            after: timeout,
        })?
        .map_err(|source| TlsError::Handshake {
            host: host.to_owned(),
            source,
        })?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| parse_cert(leaf.as_ref()));
    Ok((tls, cert))
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;

/// Subject and expiry of an X.509 certificate; `None` when it does not parse
/// (the handshake already verified it, so this is display only).
pub fn parse_cert(cert: &[u8]) -> Option<CertInfo> {
    let (SEQUENCE, cert, _) = der(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = der(tbs)?;
    if tag == 0xa0 {
        // Explicit version; the serial number follows.
        rest = der(rest)?.2;
    }
    let (_signature, _, rest) = der(rest)?;
    let (_issuer, _, rest) = der(rest)?;
    let (SEQUENCE, validity, rest) = der(rest)? else {
        return None;
    };
    let (SEQUENCE, subject, _) = der(rest)? else {
        return None;
    };
    let (_, _, after) = der(validity)?;
    let (time_tag, not_after, _) = der(after)?;
    Some(CertInfo {
        subject: name(subject),
        not_after: parse_time(time_tag, not_after)?,
    })
}

/// `CN=…, O=…` from a Name's attributes that are strings.
fn name(mut rdns: &[u8]) -> String {
    let mut parts = Vec::new();
    while let Some((_, set, rest)) = der(rdns) {
        rdns = rest;
        let Some((SEQUENCE, attr, _)) = der(set) else {
            continue;
        };
        let Some((0x06, oid, value)) = der(attr) else {
            continue;
        };
        let label = match oid {
            [0x55, 0x04, 0x03] => "CN",
            [0x55, 0x04, 0x0a] => "O",
            [0x55, 0x04, 0x06] => "C",
            _ => continue,
        };
        if let Some((_, text, _)) = der(value) {
            parts.push(format!("{label}={}", String::from_utf8_lossy(text)));
        }
    }
    parts.join(", ")
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of Unix seconds, for messages.
pub fn date_of(unix: i64) -> String {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a DER element.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn attr(oid: &[u8], value: &str) -> Vec<u8> {
        let seq = [tlv(0x06, oid), tlv(0x0c, value.as_bytes())].concat();
        tlv(0x31, &tlv(SEQUENCE, &seq))
    }

    #[test]
    fn subject_and_expiry_come_out_of_a_certificate() {
        let subject = [
            attr(&[0x55, 0x04, 0x06], "US"),
            attr(&[0x55, 0x04, 0x0a], "Meta Platforms, Inc."),
            attr(&[0x55, 0x04, 0x03], "*.whatsapp.net"),
        ]
        .concat();
        let validity = [tlv(0x17, b"250101000000Z"), tlv(0x18, b"20270315120000Z")].concat();
        let tbs = [
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1, 2, 3]),
            tlv(SEQUENCE, &tlv(0x06, &[1, 2])),
            tlv(SEQUENCE, &attr(&[0x55, 0x04, 0x03], "Issuer CA")),
            tlv(SEQUENCE, &validity),
            tlv(SEQUENCE, &subject),
            tlv(SEQUENCE, &[0u8; 200]),
        ]
        .concat();
        let cert = tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[])].concat(),
        );
        let info = parse_cert(&cert).expect("parses");
        assert_eq!(
            info.subject,
            "C=US, O=Meta Platforms, Inc., CN=*.whatsapp.net"
        );
        assert_eq!(info.not_after, 1_805_112_000);
        assert_eq!(date_of(info.not_after), "2027-03-15");
        assert_eq!(parse_cert(&cert[..cert.len() - 5]), None, "truncated");
    }

    #[test]
    fn utc_time_centuries() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"000101000000Z"), Some(946_684_800));
        assert_eq!(parse_time(0x17, b"0001010000"), None);
    }
}
