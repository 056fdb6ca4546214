//! The few Matrix client-server calls the load test makes, over plain HTTP with a hard
//! timeout on every request. Failures carry a short kind ("send: http 502 M_UNKNOWN") that
//! the report counts.

use std::{fmt, time::Duration};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::conn::Conn;

/// A failed request, described by a short, countable kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: String,
    /// `retry_after_ms` of a 429 reply, when the server gave one.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(kind: String) -> Failure {
        Failure { kind, retry_after: None }
    }

    fn transport(op: &str, e: &reqwest::Error) -> Failure {
        let what = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect error"
        } else if e.is_body() || e.is_decode() {
            "body error"
        } else if e.is_request() {
            "request error"
        } else {
            "transport error"
        };
        Failure::new(format!("{op}: {what}"))
    }

    /// A non-2xx reply given by its status code.
    pub fn status_code(op: &str, status: u16, body: &[u8]) -> Failure {
        Failure::status(op, StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), body)
    }

    /// A non-2xx reply: the status and the Matrix errcode if the body has one.
    fn status(op: &str, status: StatusCode, body: &[u8]) -> Failure {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let errcode = parsed.as_ref().and_then(|v| v["errcode"].as_str()).unwrap_or("-").to_owned();
        let retry_after = parsed.as_ref().and_then(|v| v["retry_after_ms"].as_u64()).map(Duration::from_millis);
        Failure { kind: format!("{op}: http {} {errcode}", status.as_u16()), retry_after }
    }

    pub fn is_rate_limited(&self) -> bool {
        self.kind.contains(" http 429 ")
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)
    }
}

impl std::error::Error for Failure {}

/// An HTTP client shared by all simulated users (one connection pool).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

impl Http {
    pub fn new(timeout: Duration) -> anyhow::Result<Http> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Http { client, timeout })
    }

    /// One request; the status and body of a 2xx reply, else a [`Failure`].
    pub async fn call(
        &self,
        op: &str,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Bytes, Failure> {
        let mut req = self.client.request(method, url).timeout(timeout.unwrap_or(self.timeout));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        send(op, req).await
    }

    /// A media upload of raw bytes.
    pub async fn upload(&self, url: &str, token: &str, data: Vec<u8>) -> Result<Bytes, Failure> {
        let req = self.client.post(url).timeout(self.timeout).bearer_auth(token);
        send("upload", req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(data)).await
    }

    /// A POST whose non-2xx reply the caller wants to read (the UIA challenge).
    async fn raw(&self, method: Method, url: &str, body: &Value) -> Result<(StatusCode, Bytes), reqwest::Error> {
        let resp = self.client.request(method, url).timeout(self.timeout).json(body).send().await?;
        let status = resp.status();
        Ok((status, resp.bytes().await?))
    }

    async fn call_json(
        &self,
        op: &str,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let bytes = self.call(op, method, url, token, body, None).await?;
        serde_json::from_slice(&bytes).map_err(|_| Failure::new(format!("{op}: bad json")))
    }
}

/// Sends `req`; the body of a 2xx reply, else a [`Failure`] of `op`.
async fn send(op: &str, req: reqwest::RequestBuilder) -> Result<Bytes, Failure> {
    let resp = req.send().await.map_err(|e| Failure::transport(op, &e))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| Failure::transport(op, &e))?;
    if !status.is_success() {
        return Err(Failure::status(op, status, &bytes));
    }
    Ok(bytes)
}

/// A registered user with an access token, bound to one base URL.
#[derive(Clone, Debug)]
pub struct User {
    pub base: String,
    pub user_id: String,
    pub token: String,
}

/// Registers `username` through user-interactive auth: the first call returns 401 with a
/// session, the second completes the `m.login.dummy` stage. A server that registers on the
/// first call is fine too.
pub async fn register(http: &Http, base: &str, username: &str, password: &str) -> Result<User, Failure> {
    match register_once(http, base, username, password).await {
        // A retry after a timeout whose registration had in fact gone through: sign in instead.
        Err(e) if e.kind.ends_with(" M_USER_IN_USE") => login(http, base, username, password).await,
        other => other,
    }
}

async fn login(http: &Http, base: &str, username: &str, password: &str) -> Result<User, Failure> {
    let url = format!("{base}/_matrix/client/v3/login");
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": username},
                      "password": password});
    let reply = http.call_json("login", Method::POST, &url, None, Some(&body)).await?;
    let (Some(user_id), Some(token)) = (reply["user_id"].as_str(), reply["access_token"].as_str()) else {
        return Err(Failure::new("login: no access_token".into()));
    };
    Ok(User { base: base.to_owned(), user_id: user_id.to_owned(), token: token.to_owned() })
}

async fn register_once(http: &Http, base: &str, username: &str, password: &str) -> Result<User, Failure> {
    let url = format!("{base}/_matrix/client/v3/register");
    let first = json!({"username": username, "password": password});
    let (status, bytes) = http.raw(Method::POST, &url, &first).await.map_err(|e| Failure::transport("register", &e))?;
    let body: Value = match status {
        s if s.is_success() => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        StatusCode::UNAUTHORIZED => {
            let challenge: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let mut second = first.clone();
            second["auth"] = json!({"type": "m.login.dummy"});
            if let Some(session) = challenge["session"].as_str() {
                second["auth"]["session"] = json!(session);
            }
            http.call_json("register", Method::POST, &url, None, Some(&second)).await?
        }
        s => return Err(Failure::status("register", s, &bytes)),
    };
    let (Some(user_id), Some(token)) = (body["user_id"].as_str(), body["access_token"].as_str()) else {
        return Err(Failure::new("register: no access_token".into()));
    };
    Ok(User { base: base.to_owned(), user_id: user_id.to_owned(), token: token.to_owned() })
}

impl User {
    pub async fn create_room(&self, http: &Http, body: &Value) -> Result<String, Failure> {
        let url = format!("{}/_matrix/client/v3/createRoom", self.base);
        let v = http.call_json("createRoom", Method::POST, &url, Some(&self.token), Some(body)).await?;
        v["room_id"].as_str().map(str::to_owned).ok_or_else(|| Failure::new("createRoom: no room_id".into()))
    }

    pub async fn join(&self, http: &Http, room: &str) -> Result<(), Failure> {
        let url = format!("{}/_matrix/client/v3/join/{}", self.base, enc(room));
        http.call_json("join", Method::POST, &url, Some(&self.token), Some(&json!({}))).await.map(|_| ())
    }

    pub async fn send_message(&self, http: &Http, room: &str, txn: &str, content: &Value) -> Result<(), Failure> {
        let url = format!("{}/_matrix/client/v3/rooms/{}/send/m.room.message/{}", self.base, enc(room), enc(txn));
        http.call("send", Method::PUT, &url, Some(&self.token), Some(content), None).await.map(|_| ())
    }

    /// Stores `filter` (JSON) on the server; its ID, which `/sync` then takes instead of the
    /// JSON (as Element does).
    pub async fn upload_filter(&self, http: &Http, filter: &str) -> Result<String, Failure> {
        let url = format!("{}/_matrix/client/v3/user/{}/filter", self.base, enc(&self.user_id));
        let body: Value = serde_json::from_str(filter).map_err(|_| Failure::new("filter: bad json".into()))?;
        let v = http.call_json("filter", Method::POST, &url, Some(&self.token), Some(&body)).await?;
        v["filter_id"].as_str().map(str::to_owned).ok_or_else(|| Failure::new("filter: no filter_id".into()))
    }

    /// `GET /sync` with a filter (JSON or a stored filter's ID); the raw body, so the caller
    /// can timestamp before parsing.
    pub async fn sync(
        &self,
        http: &Http,
        since: Option<&str>,
        filter: &str,
        timeout_ms: u64,
        hard_timeout: Duration,
    ) -> Result<Bytes, Failure> {
        let url = format!("{}{}", self.base, sync_path(since, filter, timeout_ms));
        http.call("sync", Method::GET, &url, Some(&self.token), None, Some(hard_timeout)).await
    }

    /// [`User::sync`] over the receiver's own connection.
    pub async fn sync_on(
        &self,
        conn: &mut Conn,
        since: Option<&str>,
        filter: &str,
        timeout_ms: u64,
        hard_timeout: Duration,
    ) -> Result<Bytes, Failure> {
        conn.get("sync", &sync_path(since, filter, timeout_ms), &self.token, hard_timeout).await
    }
}

impl User {
    /// One Simplified Sliding Sync request (MSC4186); the raw body.
    pub async fn sliding(
        &self,
        http: &Http,
        pos: Option<&str>,
        timeout_ms: u64,
        body: &Value,
        hard_timeout: Duration,
    ) -> Result<Bytes, Failure> {
        let mut url =
            format!("{}/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout={timeout_ms}", self.base);
        if let Some(p) = pos {
            url.push_str("&pos=");
            url.push_str(&enc(p));
        }
        http.call("sliding", Method::POST, &url, Some(&self.token), Some(body), Some(hard_timeout)).await
    }
}

/// The path and query of a `/sync` request.
pub fn sync_path(since: Option<&str>, filter: &str, timeout_ms: u64) -> String {
    let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}&filter={}", enc(filter));
    if let Some(s) = since {
        path.push_str("&since=");
        path.push_str(&enc(s));
    }
    path
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend(['%', char::from(HEX[usize::from(b >> 4)]), char::from(HEX[usize::from(b & 15)])]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(enc("!abc:localhost"), "%21abc%3Alocalhost");
        assert_eq!(enc(r#"{"a":1}"#), "%7B%22a%22%3A1%7D");
        assert_eq!(enc("s_1-2.3~"), "s_1-2.3~");
    }

    #[test]
    fn status_failures_name_the_errcode() {
        let f = Failure::status(
            "send",
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":250}"#,
        );
        assert_eq!(f.kind, "send: http 429 M_LIMIT_EXCEEDED");
        assert_eq!(f.retry_after, Some(Duration::from_millis(250)));
        assert!(f.is_rate_limited());
        assert_eq!(Failure::status("sync", StatusCode::BAD_GATEWAY, b"oops").kind, "sync: http 502 -");
    }
}
