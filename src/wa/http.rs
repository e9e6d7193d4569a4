//! whatsapp-rust's `HttpClient` on walink's own HTTP client (`net::http`),
//! so the version page and media go through the account's proxy, IP family
//! and timeouts like its WebSocket.

use std::io::Read;

use anyhow::Result;
use bytes::Bytes;
use tokio::runtime::Handle;
use wacore::net::{HttpClient, HttpRequest, HttpResponse, StreamingHttpResponse, UploadBody};

use crate::net::http::{self, Body, RequestBody};

/// Largest body read into memory at once. Downloads stream instead (the
/// library asks for a streaming response when the client offers one), so
/// this bounds the version page and small API answers.
const MAX_BUFFERED: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct WaHttpClient {
    client: http::HttpClient,
    /// The runtime the blocking (streaming) calls run their I/O on.
    runtime: Handle,
}

impl WaHttpClient {
    /// Must be called inside the Tokio runtime.
    pub fn new(client: http::HttpClient) -> WaHttpClient {
        WaHttpClient {
            client,
            runtime: Handle::current(),
        }
    }
}

fn request(r: &HttpRequest) -> http::Request {
    http::Request {
        method: r.method.clone(),
        url: r.url.clone(),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

#[async_trait::async_trait]
impl HttpClient for WaHttpClient {
    async fn execute(&self, r: HttpRequest) -> Result<HttpResponse> {
        let body = match &r.body {
            Some(b) => RequestBody::Bytes(b),
            None => RequestBody::Empty,
        };
        let response = self.client.send(&request(&r), body).await?;
        Ok(HttpResponse {
            status_code: response.status,
            body: response.body.to_vec(MAX_BUFFERED).await?,
        })
    }

    fn supports_streaming(&self) -> bool {
        true
    }

    fn execute_streaming(&self, r: HttpRequest) -> Result<StreamingHttpResponse> {
        let response = self
            .runtime
            .block_on(self.client.send(&request(&r), RequestBody::Empty))?;
        Ok(StreamingHttpResponse {
            status_code: response.status,
            body: Box::new(BlockingBody::new(response.body, self.runtime.clone())),
        })
    }

    fn supports_upload_streaming(&self) -> bool {
        true
    }

    fn execute_upload(
        &self,
        r: HttpRequest,
        mut body: UploadBody,
        content_length: u64,
    ) -> Result<HttpResponse> {
        self.runtime.block_on(async {
            let response = self
                .client
                .send(
                    &request(&r),
                    RequestBody::Blocking(&mut body, content_length),
                )
                .await?;
            Ok(HttpResponse {
                status_code: response.status,
                body: response.body.to_vec(MAX_BUFFERED).await?,
            })
        })
    }
}

/// A response body as a blocking reader, one socket read at a time.
pub(super) struct BlockingBody {
    body: Body,
    runtime: Handle,
    pending: Bytes,
}

impl BlockingBody {
    /// Reads run their I/O on `runtime`: use it from a blocking thread only.
    pub(super) fn new(body: Body, runtime: Handle) -> BlockingBody {
        BlockingBody {
            body,
            runtime,
            pending: Bytes::new(),
        }
    }
}

impl Read for BlockingBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            match self.runtime.block_on(self.body.chunk()) {
                Ok(Some(piece)) => self.pending = piece,
                Ok(None) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}
