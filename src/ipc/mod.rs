//! ipc layer: the JSON-RPC 2.0 protocol on walinkd's Unix socket.
//!
//! `protocol` is shared by the daemon and every client; `server` is the
//! daemon's side (socket binding, connections, dispatch to a [`Handler`]);
//! `client` is what `walink` uses.

pub mod client;
pub mod protocol;
pub mod server;

pub use client::{Client, ClientError, StreamItem};
pub use protocol::{Call, RpcError};
pub use server::{
    DecodedRequest, Handler, NotificationSink, SinkError, bind, decode_request, serve,
    systemd_listener,
};
