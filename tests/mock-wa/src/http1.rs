//! The small HTTP/1.1 server side shared by the admin API and the media
//! host: one request per connection, `Content-Length` or chunked bodies,
//! `Expect: 100-continue` honoured (curl sends it for larger uploads).

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const MAX_HEAD: usize = 16 * 1024;

/// A parsed request: method, path without the query, decoded query pairs
/// (in order) and the body.
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Buffered reader over the connection: what is read past the head stays
/// here for the body.
struct Conn<'a> {
    tcp: &'a mut TcpStream,
    buf: Vec<u8>,
}

impl Conn<'_> {
    async fn fill(&mut self, what: &str) -> Result<(), String> {
        let mut chunk = [0u8; 8192];
        let n = self.tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("connection closed before the {what} ended"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn line(&mut self, max: usize) -> Result<Vec<u8>, String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > max {
                return Err("chunk size line too long".into());
            }
            self.fill("chunked body").await?;
        }
    }

    async fn exact(&mut self, n: usize, what: &str) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill(what).await?;
        }
        Ok(self.buf.drain(..n).collect())
    }
}

/// Reads one request; `Err` carries a message for a 400 answer.
pub async fn read_request(tcp: &mut TcpStream, max_body: usize) -> Result<Request, String> {
    let mut conn = Conn {
        tcp,
        buf: Vec::with_capacity(1024),
    };
    let head_end = loop {
        if let Some(i) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if conn.buf.len() > MAX_HEAD {
            return Err("request head too large".into());
        }
        conn.fill("request head").await?;
    };
    let head = std::str::from_utf8(&conn.buf[..head_end])
        .map_err(|_| "request head is not UTF-8")?
        .to_owned();
    conn.buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let chunked = find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let content_length: usize = match find("content-length") {
        Some(v) => v.parse().map_err(|_| "bad Content-Length")?,
        None => 0,
    };
    if content_length > max_body {
        return Err(format!("body larger than {max_body} bytes"));
    }
    if find("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        conn.tcp
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
    }
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let line = conn.line(64).await?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.split(';').next())
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or("bad chunk size line")?;
            if body.len() + size > max_body {
                return Err(format!("body larger than {max_body} bytes"));
            }
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !conn.line(MAX_HEAD).await?.is_empty() {}
                break body;
            }
            body.extend(conn.exact(size, "chunked body").await?);
            conn.exact(2, "chunked body").await?;
        }
    } else {
        conn.exact(content_length, "body").await?
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Ok(Request {
        method,
        path: path.to_owned(),
        query: parse_query(query),
        headers,
        body,
    })
}

/// Writes the whole response and closes the connection.
pub async fn respond(tcp: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let _ = tcp.write_all(body).await;
    let _ = tcp.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split(['&', '?'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| char::from(c).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            parse_query("contact=%2B1555&x=a+b&flag"),
            vec![
                ("contact".into(), "+1555".into()),
                ("x".into(), "a b".into()),
                ("flag".into(), String::new())
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        // A direct path carries its own query; the client appends a second `?`.
        assert_eq!(
            parse_query("ccb=11-4?auth=A&token=T"),
            vec![
                ("ccb".into(), "11-4".into()),
                ("auth".into(), "A".into()),
                ("token".into(), "T".into())
            ]
        );
    }

    #[tokio::test]
    async fn chunked_bodies_and_continue_are_handled() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"POST /mms/image/T?auth=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n").await.unwrap();
            let mut cont = [0u8; 25];
            tcp.read_exact(&mut cont).await.unwrap();
            assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
            tcp.write_all(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n")
                .await
                .unwrap();
            let mut rest = Vec::new();
            tcp.read_to_end(&mut rest).await.unwrap();
            String::from_utf8(rest).unwrap()
        });
        let (mut tcp, _) = listener.accept().await.unwrap();
        let req = read_request(&mut tcp, 100).await.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/mms/image/T");
        assert_eq!(req.body, b"hello world");
        respond(&mut tcp, 200, "text/plain", b"ok").await;
        assert!(client.await.unwrap().ends_with("\r\n\r\nok"));
    }
}
