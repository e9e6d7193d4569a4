//! The media host: `media_conn` answers name it, clients upload encrypted
//! blobs to it and download them from it, as from WhatsApp's CDN.
//!
//! It listens on loopback (`MockConfig::media_listen`) and advertises itself
//! in `media_conn` by `IP:PORT` as the hostname. Clients build
//! `https://HOSTNAME/...` URLs from that; the tests' HTTP client speaks plain
//! HTTP to that one address (the mock has no TLS).

pub mod crypto;
mod http;
mod store;

pub use crypto::{MediaCryptoError, MediaKind};
pub use http::serve;
pub use store::{Blob, MediaStore, Stored, UploadRefused};
