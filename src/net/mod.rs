//! Getting bytes to WhatsApp's edge: dialing (IP family, happy eyeballs),
//! proxies and TLS. Knows nothing of WebSocket or the WhatsApp protocol.

pub mod dial;
pub mod http;
pub mod proxy;
pub mod tls;

pub use dial::{DialError, Dialer, IpFamily};
pub use proxy::{Proxy, ProxyError, ProxyKind};
pub use tls::{CertInfo, TlsError};
