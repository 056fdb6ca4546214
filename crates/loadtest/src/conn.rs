//! A receiver's own keep-alive HTTP/1.1 connection for its long-polls, as a client holds one
//! connection for its `/sync` loop. It does only what a long-poll needs (a GET, or a POST of
//! JSON for sliding sync, with a bearer token; a reply with `Content-Length` or chunked body)
//! and costs a fraction of the CPU of a pooled general-purpose client per request, which
//! matters when the load shares the machine with the server it measures. Plain `http://` only; other URLs use the shared client.

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
    /// Whether any byte of the current reply has arrived.
    received: bool,
}

impl Conn {
    /// A connection to the server at `base` (`http://host:port`), or `None` for other URLs.
    pub fn new(base: &str) -> Option<Conn> {
        let authority = base.strip_prefix("http://")?.trim_end_matches('/');
        (!authority.is_empty() && !authority.contains('/')).then(|| Conn {
            authority: authority.to_owned(),
            stream: None,
            buf: BytesMut::with_capacity(16 << 10),
            received: false,
        })
    }

    /// `GET path` with `token`; the body of a 2xx reply, else a [`Failure`] named by `op`.
    /// The connection is dropped after any failure and opened again by the next request.
    pub async fn get(&mut self, op: &str, path: &str, token: &str, timeout: Duration) -> Result<Bytes, Failure> {
        self.request(op, path, token, None, timeout).await
    }

    /// `POST path` with `token` and a JSON `body`, as [`Conn::get`].
    pub async fn post(
        &mut self,
        op: &str,
        path: &str,
        token: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, Failure> {
        self.request(op, path, token, Some(body), timeout).await
    }

    async fn request(
        &mut self,
        op: &str,
        path: &str,
        token: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Bytes, Failure> {
        match tokio::time::timeout(timeout, self.attempt(path, token, body)).await {
            Ok(Ok((status, body))) if (200..300).contains(&status) => Ok(body),
            Ok(Ok((status, body))) => Err(Failure::status_code(op, status, &body)),
            Ok(Err(what)) => {
                self.stream = None;
                Err(Failure::new(format!("{op}: {what}")))
            }
            Err(_) => {
                self.stream = None;
                Err(Failure::new(format!("{op}: timeout")))
            }
        }
    }

    /// One exchange; a kept-alive connection the server closed while idle (nothing of the
    /// reply arrived) is replaced once.
    async fn attempt(&mut self, path: &str, token: &str, body: Option<&[u8]>) -> Result<(u16, Bytes), &'static str> {
        let reused = self.stream.is_some();
        match self.exchange(path, token, body).await {
            Err(_) if reused && !self.received => {
                self.stream = None;
                self.exchange(path, token, body).await
            }
            other => other,
        }
    }

    async fn exchange(&mut self, path: &str, token: &str, body: Option<&[u8]>) -> Result<(u16, Bytes), &'static str> {
        self.received = false;
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.authority).await.map_err(|_| "connect error")?;
            stream.set_nodelay(true).map_err(|_| "connect error")?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().ok_or("connect error")?;
        let host = &self.authority;
        let mut request = match body {
            None => {
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n").into_bytes()
            }
            Some(b) => format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )
            .into_bytes(),
        };
        request.extend_from_slice(body.unwrap_or_default());
        stream.write_all(&request).await.map_err(|_| "transport error")?;
        // Interim (1xx) heads are skipped; the final head says how the body is framed.
        let (status, length, mut close) = loop {
            match parse_head(&mut self.buf)? {
                Some((status, ..)) if (100..200).contains(&status) => continue,
                Some(head) => break head,
                None => {
                    read_more(stream, &mut self.buf).await?;
                    self.received = true;
                }
            }
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
            Length::UntilClose => {
                while read_more(stream, &mut self.buf).await.is_ok() {}
                close = true;
                self.buf.split().freeze()
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
    /// Neither length nor chunks: the body ends when the server closes the connection.
    UntilClose,
}

/// Reads more of the reply into `buf`; an error at the end of the stream.
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

/// The status, body framing and whether the server closes afterwards, once the whole head is
/// in `buf` (which it is then removed from).
fn parse_head(buf: &mut BytesMut) -> Result<Option<(u16, Length, bool)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut reply = httparse::Response::new(&mut headers);
    let used = match reply.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("body error"),
    };
    let status = reply.code.ok_or("body error")?;
    let (mut exact, mut chunked, mut close) = (None, false, false);
    for h in reply.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| "body error")?.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            exact = Some(value.parse().map_err(|_| "body error")?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is the last coding when present; it wins over any Content-Length.
            chunked = value.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    buf.advance(used);
    let length = if chunked {
        Length::Chunked
    } else if let Some(n) = exact {
        Length::Exact(n)
    } else if (100..200).contains(&status) || status == 204 || status == 304 {
        Length::Exact(0)
    } else {
        Length::UntilClose
    };
    Ok(Some((status, length, close)))
}

/// Moves one whole chunk from `buf` to `body`: `Some(true)` after the last (empty) chunk and
/// its trailer section, `None` while that is not all in `buf` yet.
fn take_chunk(buf: &mut BytesMut, body: &mut BytesMut) -> Result<Option<bool>, &'static str> {
    let Some(eol) = find_crlf(buf, 0) else { return Ok(None) };
    let line = std::str::from_utf8(&buf[..eol]).map_err(|_| "body error")?;
    let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).map_err(|_| "body error")?;
    if size > MAX_REPLY {
        return Err("body error");
    }
    if size == 0 {
        // Trailer lines, if any, end with an empty line.
        let mut at = eol + 2;
        loop {
            let Some(end) = find_crlf(buf, at) else { return Ok(None) };
            if end == at {
                buf.advance(end + 2);
                return Ok(Some(true));
            }
            at = end + 2;
        }
    }
    let needed = eol + 2 + size + 2;
    if buf.len() < needed {
        return Ok(None);
    }
    if &buf[eol + 2 + size..needed] != b"\r\n" {
        return Err("body error");
    }
    buf.advance(eol + 2);
    body.extend_from_slice(&buf[..size]);
    buf.advance(size + 2);
    Ok(Some(false))
}

/// Where the next CRLF at or after `from` starts.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?.windows(2).position(|w| w == b"\r\n").map(|i| from + i)
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
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 99\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 49\r\n\r\n{\"errcode\":\"M_LIMIT_EXCEEDED\",\"retry_after_ms\":7}",
            "HTTP/1.1 200 OK\r\n\r\nuntil the end",
        ])
        .await;
        let mut conn = Conn::new(&base).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(&conn.get("sync", "/s?x=1", "tok", t).await.unwrap()[..], b"hello");
        assert_eq!(&conn.get("sync", "/s?x=1", "tok", t).await.unwrap()[..], b"abcde");
        assert!(conn.get("sync", "/s?x=1", "tok", t).await.unwrap().is_empty());
        let limited = conn.get("sync", "/s?x=1", "tok", t).await.unwrap_err();
        assert_eq!(limited.kind, "sync: http 429 M_LIMIT_EXCEEDED");
        assert_eq!(limited.retry_after, Some(Duration::from_millis(7)));
        // Neither length nor chunks: the body runs to the end of the connection.
        assert_eq!(&conn.get("sync", "/s?x=1", "tok", t).await.unwrap()[..], b"until the end");
        // The server has gone: a failure, not a hang.
        assert_eq!(conn.get("sync", "/s?x=1", "tok", t).await.unwrap_err().kind, "sync: connect error");
    }

    #[tokio::test]
    async fn an_idle_connection_the_server_closed_is_replaced_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for reply in ["first", "second"] {
                // One request per connection, then the server closes it.
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 1024];
                    let n = socket.read(&mut chunk).await.unwrap();
                    seen.extend_from_slice(&chunk[..n]);
                }
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{reply}", reply.len());
                socket.write_all(head.as_bytes()).await.unwrap();
            }
        });
        let mut conn = Conn::new(&base).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(&conn.get("sync", "/s", "tok", t).await.unwrap()[..], b"first");
        // Give the server time to close the first connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(&conn.get("sync", "/s", "tok", t).await.unwrap()[..], b"second");
    }

    #[test]
    fn only_plain_http_urls() {
        assert!(Conn::new("http://127.0.0.1:8008").is_some());
        assert!(Conn::new("http://127.0.0.1:8008/").is_some());
        assert!(Conn::new("https://example.org").is_none());
        assert!(Conn::new("http://example.org/prefix").is_none());
    }
}
