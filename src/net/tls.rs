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
    /// RFC 4514 order and escaping, e.g. `CN=*.whatsapp.net,O=Meta Platforms\, Inc.,C=US`
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

/// Subject and expiry of an X.509 certificate; `None` when it does not parse
/// (the handshake already verified it, so this is display only).
pub fn parse_cert(cert: &[u8]) -> Option<CertInfo> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert).ok()?;
    let tbs = cert.tbs_certificate();
    let not_after = tbs.validity().not_after.to_unix_duration().as_secs();
    Some(CertInfo {
        subject: tbs.subject().to_string(),
        not_after: i64::try_from(not_after).ok()?,
    })
}

/// `YYYY-MM-DD` of Unix seconds, for messages.
pub fn date_of(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("{unix} (Unix seconds)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_expiry_come_out_of_a_certificate() {
        // A self-signed certificate made with
        // `openssl req -x509 -subj "/C=US/O=Meta Platforms, Inc./CN=*.whatsapp.net"`.
        let cert = include_bytes!("testdata/whatsapp-net.der");
        let info = parse_cert(cert).expect("parses");
        assert_eq!(
            info.subject,
            "CN=*.whatsapp.net,O=Meta Platforms\\, Inc.,C=US"
        );
        assert_eq!(info.not_after, 1_796_205_371);
        assert_eq!(date_of(info.not_after), "2026-12-02");
        assert_eq!(parse_cert(&cert[..cert.len() - 5]), None, "truncated");
        assert_eq!(parse_cert(b"not a certificate"), None);
    }
}
