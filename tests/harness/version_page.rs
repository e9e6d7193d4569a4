//! A stand-in for `https://web.whatsapp.com/sw.js` on loopback, plain HTTP:
//! walinkd's test builds are pointed at it with `WALINK_TEST_HOSTS`. It
//! answers every GET with a service worker naming [`REVISION`], counts the
//! requests it answered, and can be switched off (connections refused).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The `client_revision` the page publishes.
pub const REVISION: u32 = 1_029_384_756;

pub struct VersionPage {
    pub addr: SocketAddr,
    served: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for VersionPage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl VersionPage {
    pub async fn start() -> VersionPage {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let count = served.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match client.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = format!(
                        "self.__swData=JSON.parse(\"{{\\\"SiteData\\\":{{\\\"client_revision\\\":{REVISION}}}}}\");"
                    );
                    // Chunked, as the real page is served.
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                        body.len()
                    );
                    if client.write_all(reply.as_bytes()).await.is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        VersionPage { addr, served, task }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// An address where nothing listens: a version page that is down.
    pub fn unreachable() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }
}
