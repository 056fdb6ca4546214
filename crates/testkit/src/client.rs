//! A small Matrix client over plain HTTP for tests: every call returns the status and the
//! JSON body so tests can assert on errors as easily as on successes.

use serde_json::{Value, json};

/// The password of the users [`crate::TestServer::user`] registers.
pub const PASSWORD: &str = "pw";

/// An HTTP status and a JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// Panics unless the status is 200; returns the body.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {}: {}", self.status, self.body);
        self.body
    }

    /// Panics unless the reply is an error with this status and errcode.
    #[track_caller]
    pub fn err(&self, status: u16, errcode: &str) {
        assert_eq!((self.status, self.body["errcode"].as_str()), (status, Some(errcode)), "body: {}", self.body);
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
    pub user_id: String,
    pub device_id: String,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            user_id: String::new(),
            device_id: String::new(),
        }
    }

    /// The same user and token against another gateway.
    pub fn via(&self, base: &str) -> Client {
        Client { base: base.trim_end_matches('/').to_owned(), ..self.clone() }
    }

    /// Sends a request; `path` starts with `/` and may carry a query string.
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.builder(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        Client::send(req).await
    }

    /// Sends `body` as it is (any bytes, not necessarily JSON).
    pub async fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> Reply {
        Client::send(self.builder(method, path).body(body)).await
    }

    fn builder(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let req = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body read");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.request("PUT", path, Some(body)).await
    }

    /// Joins a room by ID or alias; panics unless it worked.
    pub async fn join(&self, room: &str) {
        self.post(&format!("/_matrix/client/v3/join/{}", enc(room)), json!({})).await.ok();
    }

    /// Device keys for this device in the shape `/keys/upload` takes, signed by the device's
    /// own ed25519 key ([`crate::signing::device_key`]).
    pub fn device_keys(&self) -> Value {
        crate::signing::device_keys(&self.user_id, &self.device_id)
    }

    /// This device's ed25519 key, the one that signs [`Client::device_keys`].
    pub fn device_signing_key(&self) -> crate::SigningKey {
        crate::signing::device_key(&self.user_id, &self.device_id)
    }

    /// Registers through user-interactive auth (the 401 challenge, then `m.login.dummy`) and
    /// keeps the new session.
    pub async fn register(&mut self, username: &str, password: &str) -> Value {
        let challenge =
            self.post("/_matrix/client/v3/register", json!({"username": username, "password": password})).await;
        assert_eq!(challenge.status, 401, "{}", challenge.body);
        let session = challenge.body["session"].as_str().expect("UIA session").to_owned();
        let body = self
            .post(
                "/_matrix/client/v3/register",
                json!({"username": username, "password": password, "auth": {"type": "m.login.dummy", "session": session}}),
            )
            .await
            .ok();
        self.adopt(&body);
        body
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Value {
        let body = self
            .post(
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}),
            )
            .await
            .ok();
        self.adopt(&body);
        body
    }

    fn adopt(&mut self, body: &Value) {
        self.token = body["access_token"].as_str().map(str::to_owned);
        self.user_id = body["user_id"].as_str().unwrap_or_default().to_owned();
        self.device_id = body["device_id"].as_str().unwrap_or_default().to_owned();
    }

    pub async fn create_room(&self, body: Value) -> String {
        let reply = self.post("/_matrix/client/v3/createRoom", body).await.ok();
        reply["room_id"].as_str().expect("room_id").to_owned()
    }

    pub async fn send_text(&self, room: &str, txn: &str, text: &str) -> String {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(room), enc(txn));
        let reply = self.put(&path, json!({"msgtype": "m.text", "body": text})).await.ok();
        reply["event_id"].as_str().expect("event_id").to_owned()
    }

    /// `GET /sync` with optional `since`, inline filter and timeout.
    pub async fn sync(&self, since: Option<&str>, filter: Option<&Value>, timeout_ms: u64) -> Value {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(s) = since {
            path.push_str(&format!("&since={}", enc(s)));
        }
        if let Some(f) = filter {
            path.push_str(&format!("&filter={}", enc(&f.to_string())));
        }
        self.get(&path).await.ok()
    }
}

impl Client {
    /// One Simplified Sliding Sync request (MSC4186's unstable path) with optional `pos` and
    /// `timeout`.
    pub async fn sliding(&self, pos: Option<&str>, timeout_ms: Option<u64>, body: Value) -> Reply {
        let mut query = Vec::new();
        if let Some(p) = pos {
            query.push(format!("pos={}", enc(p)));
        }
        if let Some(t) = timeout_ms {
            query.push(format!("timeout={t}"));
        }
        let path = format!("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?{}", query.join("&"));
        self.post(&path, body).await
    }
}

/// Percent-encodes a path or query component.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Message bodies in a room's timeline of a sync response, in order.
pub fn timeline_bodies(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
