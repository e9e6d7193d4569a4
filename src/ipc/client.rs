//! The client side of walinkd's socket.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec, LinesCodecError};

use super::protocol::{Notification, Request, RpcError};

/// Replies can be much longer than requests (`status` of many accounts).
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}: no socket there; is walinkd running? (`systemctl status walink`, or start `walinkd --user`), or give its path with --socket or WALINK_SOCKET", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: permission denied; are you in group walink? (`sudo usermod -aG walink $USER`, then log in again)", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("{}: connection refused; walinkd is not running (the socket is left from an earlier run): start it with `systemctl start walink`", path.display())]
    Refused { path: PathBuf },
    #[error("{}: cannot connect: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("connection to walinkd failed: {0}; see `journalctl -u walink`")]
    Io(#[from] io::Error),
    #[error(
        "walinkd closed the connection before answering; it may be shutting down or restarting (see `journalctl -u walink`)"
    )]
    Closed,
    #[error("unexpected reply from walinkd: {0}; are walink and walinkd the same version?")]
    Protocol(String),
    /// walinkd answered with a JSON-RPC error.
    #[error("{0}")]
    Rpc(RpcError),
}

impl ClientError {
    /// True when walinkd could not be reached at all (as opposed to a request it refused).
    pub fn is_connection_error(&self) -> bool {
        !matches!(self, ClientError::Rpc(_))
    }
}

/// What a streaming call yields: notifications, then exactly one result.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Notification(Notification),
    Result(Value),
}

/// One connection to walinkd. Calls on it run one after another.
pub struct Client {
    reader: FramedRead<OwnedReadHalf, LinesCodec>,
    writer: FramedWrite<OwnedWriteHalf, LinesCodec>,
    next_id: u64,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).await.map_err(|source| {
            let path = path.to_owned();
            match source.kind() {
                io::ErrorKind::NotFound => ClientError::NotFound { path },
                io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path },
                io::ErrorKind::ConnectionRefused => ClientError::Refused { path },
                _ => ClientError::Connect { path, source },
            }
        })?;
        let (read, write) = stream.into_split();
        Ok(Client {
            reader: FramedRead::new(read, LinesCodec::new_with_max_length(MAX_REPLY_BYTES)),
            writer: FramedWrite::new(write, LinesCodec::new()),
            next_id: 1,
        })
    }

    /// Calls `method` and waits for its result; a JSON-RPC error becomes
    /// [`ClientError::Rpc`]. Notifications arriving meanwhile are skipped.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.send(method, params).await?;
        loop {
            if let StreamItem::Result(value) = self.next_item(id).await? {
                return Ok(value);
            }
        }
    }

    /// [`Client::call`] with typed params and result.
    pub async fn call_typed<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &str,
        params: &P,
    ) -> Result<R, ClientError> {
        let params = serde_json::to_value(params)
            .map_err(|e| ClientError::Protocol(format!("cannot encode params: {e}")))?;
        let value = self.call(method, params).await?;
        decode(value)
    }

    /// Starts a streaming call (`qr`, `subscribe`); read it with [`Stream::next`].
    pub async fn stream(&mut self, method: &str, params: Value) -> Result<Stream<'_>, ClientError> {
        let id = self.send(method, params).await?;
        Ok(Stream {
            client: self,
            id,
            done: false,
        })
    }

    async fn send(&mut self, method: &str, params: Value) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::to_string(&Request::new(id, method, params))
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        self.writer.send(line).await.map_err(codec_error)?;
        Ok(id)
    }

    async fn next_item(&mut self, id: u64) -> Result<StreamItem, ClientError> {
        let line = match self.reader.next().await {
            Some(line) => line.map_err(codec_error)?,
            None => return Err(ClientError::Closed),
        };
        let line: Line<'_> = serde_json::from_str(&line)
            .map_err(|e| ClientError::Protocol(format!("not JSON-RPC ({e})")))?;
        let tree = |raw: &RawValue| {
            serde_json::from_str(raw.get())
                .map_err(|e| ClientError::Protocol(format!("not JSON ({e})")))
        };
        if let (Some(method), None) = (line.method, &line.id) {
            let params = line.params.map(tree).transpose()?.unwrap_or(Value::Null);
            return Ok(StreamItem::Notification(Notification::new(&method, params)));
        }
        let answered = line.id.unwrap_or(Value::Null);
        if answered != id {
            return Err(ClientError::Protocol(format!(
                "answer for request {answered} while waiting for {id}"
            )));
        }
        match (line.result, line.error) {
            (_, Some(err)) => Err(ClientError::Rpc(err)),
            (Some(result), None) => Ok(StreamItem::Result(tree(result)?)),
            (None, None) => Err(ClientError::Protocol(format!(
                "the answer to request {id} has neither a result nor an error"
            ))),
        }
    }
}

/// A line from walinkd, a response or a notification, with its payload left
/// as text until it is known which: reading it into a [`Value`] and then
/// into a [`super::protocol::Response`] (whose flattened outcome is buffered
/// once more) built the 3.4 MB tree of a `status` of 5,000 accounts three
/// times over.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<RpcError>,
}

/// A field that is there, `null` included (a method may answer `null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A streaming call in progress.
pub struct Stream<'a> {
    client: &'a mut Client,
    id: u64,
    done: bool,
}

impl Stream<'_> {
    /// The next notification, or the final result (after which the stream
    /// is over and `next` returns `Ok(None)`).
    pub async fn next(&mut self) -> Result<Option<StreamItem>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let item = self.client.next_item(self.id).await;
        if !matches!(item, Ok(StreamItem::Notification(_))) {
            self.done = true;
        }
        item.map(Some)
    }
}

/// Decodes a reply value into a protocol type.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
}

fn codec_error(e: LinesCodecError) -> ClientError {
    match e {
        LinesCodecError::Io(e) => ClientError::Io(e),
        LinesCodecError::MaxLineLengthExceeded => ClientError::Protocol(format!(
            "a reply line is longer than {MAX_REPLY_BYTES} bytes"
        )),
    }
}
