//! A receiver's own keep-alive HTTP/1.1 connection for its long-polls, as a client holds one
//! connection for its `/sync` loop. It does only what a long-poll needs (a GET with a bearer
//! token, a reply with `Content-Length` or chunked body) and costs a fraction of the CPU of a
//! pooled general-purpose client per request, which matters when the load shares the machine
//! with the server it measures. Plain `http://` only; other URLs use the shared client.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::client::Failure;

/// Replies larger than this are refused (a long-poll reply in the load test is small).
const MAX_REPLY: usize = 64 << 20;

pub struct Conn {
    /// `host:port`.
    authority: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

impl Conn {
    /// A connection to the server at `base` (`http://host:port`), or `None` for other URLs.
    pub fn new(base: &str) -> Option<Conn> {
        let authority = base.strip_prefix("http://")?.trim_end_matches('/');
        (!authority.is_empty() && !authority.contains('/'))
            .then(|| Conn { authority: authority.to_owned(), stream: None, buf: BytesMut::with_capacity(16 << 10) })
    }

    /// `GET path` with `token`; the body of a 2xx reply, else a [`Failure`] named by `op`.
    /// The connection is dropped after any failure and opened again by the next request.
    pub async fn get(&mut self, op: &str, path: &str, token: &str, timeout: Duration) -> Result<Bytes, Failure> {
        match tokio::time::timeout(timeout, self.exchange(path, token)).await {
            Ok(Ok((status, body))) if (200..300).contains(&status) => Ok(body),
            Ok(Ok((status, body))) => Err(Failure::status_code(op, status, &body)),
            Ok(Err(what)) => {
                self.stream = None;
                Err(Failure::kind(format!("{op}: {what}")))
            }
            Err(_) => {
                self.stream = None;
                Err(Failure::kind(format!("{op}: timeout")))
            }
        }
    }

    async fn exchange(&mut self, path: &str, token: &str) -> Result<(u16, Bytes), &'static str> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.authority).await.map_err(|_| "connect error")?;
            stream.set_nodelay(true).map_err(|_| "connect error")?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().ok_or("connect error")?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n", self.authority);
        stream.write_all(request.as_bytes()).await.map_err(|_| "transport error")?;
        let (status, length, close) = loop {
            if let Some(head) = parse_head(&mut self.buf)? {
                break head;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let body = match length {
            Length::Exact(n) => {
                while self.buf.len() < n {
                    read_more(stream, &mut self.buf).await?;
                }
                self.buf.split_to(n).freeze()
            }
            Length::Chunked => {
                let mut body = BytesMut::new();
                loop {
                    match take_chunk(&mut self.buf, &mut body)? {
                        Some(true) => break,
                        Some(false) => continue,
                        None => read_more(stream, &mut self.buf).await?,
                    }
                }
                body.freeze()
            }
        };
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

enum Length {
    Exact(usize),
    Chunked,
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), &'static str> {
    if buf.len() > MAX_REPLY {
        return Err("body error");
    }
    buf.reserve(16 << 10);
    match stream.read_buf(buf).await {
        Ok(0) => Err("transport error"),
        Ok(_) => Ok(()),
        Err(_) => Err("transport error"),
    }
}

/// The status, body length and whether the server closes afterwards, once the whole head is in
/// `buf` (which it is then removed from).
fn parse_head(buf: &mut BytesMut) -> Result<Option<(u16, Length, bool)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut reply = httparse::Response::new(&mut headers);
    let used = match reply.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("body error"),
    };
    let status = reply.code.ok_or("body error")?;
    let (mut length, mut close) = (None, false);
    for h in reply.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| "body error")?.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(Length::Exact(value.parse().map_err(|_| "body error")?));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            length = Some(Length::Chunked);
        } else if h.name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    buf.advance(used);
    Ok(Some((status, length.unwrap_or(Length::Exact(0)), close)))
}

/// Moves one whole chunk from `buf` to `body`: `Some(true)` after the last (empty) chunk,
/// `None` while the chunk is not all in `buf` yet.
fn take_chunk(buf: &mut BytesMut, body: &mut BytesMut) -> Result<Option<bool>, &'static str> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
    let line = std::str::from_utf8(&buf[..eol]).map_err(|_| "body error")?;
    let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).map_err(|_| "body error")?;
    if size > MAX_REPLY {
        return Err("body error");
    }
    // The size line, the data and its CRLF (after the last chunk: the final CRLF).
    let needed = eol + 2 + size + 2;
    if buf.len() < needed {
        return Ok(None);
    }
    buf.advance(eol + 2);
    body.extend_from_slice(&buf[..size]);
    buf.advance(size + 2);
    Ok(Some(size == 0))
}

#[cfg(test)]
mod tests {
    use tokio::{io::AsyncWriteExt, net::TcpListener};

    use super::*;

    /// A server that answers each request on one connection with the next canned reply.
    async fn serve(replies: Vec<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for reply in replies {
                // Wait for a whole request head before answering.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 1024];
                    let n = socket.read(&mut chunk).await.unwrap();
                    seen.extend_from_slice(&chunk[..n]);
                }
                let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let head = String::from_utf8(seen.drain(..end).collect()).unwrap();
                assert!(head.starts_with("GET /s?x=1 HTTP/1.1\r\n"), "{head}");
                assert!(head.contains("Authorization: Bearer tok\r\n"), "{head}");
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn lengths_chunks_and_errors_on_one_connection() {
        let base = serve(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 49\r\n\r\n{\"errcode\":\"M_LIMIT_EXCEEDED\",\"retry_after_ms\":7}",
        ])
        .await;
        let mut conn = Conn::new(&base).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(&conn.get("sync", "/s?x=1", "tok", t).await.unwrap()[..], b"hello");
        assert_eq!(&conn.get("sync", "/s?x=1", "tok", t).await.unwrap()[..], b"abcde");
        let limited = conn.get("sync", "/s?x=1", "tok", t).await.unwrap_err();
        assert_eq!(limited.kind, "sync: http 429 M_LIMIT_EXCEEDED");
        assert_eq!(limited.retry_after, Some(Duration::from_millis(7)));
        // The server has gone: a transport failure, not a hang.
        assert_eq!(conn.get("sync", "/s?x=1", "tok", t).await.unwrap_err().kind, "sync: transport error");
    }

    #[test]
    fn only_plain_http_urls() {
        assert!(Conn::new("http://127.0.0.1:8008").is_some());
        assert!(Conn::new("http://127.0.0.1:8008/").is_some());
        assert!(Conn::new("https://example.org").is_none());
        assert!(Conn::new("http://example.org/prefix").is_none());
    }
}
