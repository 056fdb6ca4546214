//! The bad-input corpus: NUL and control characters in every kind of input, invalid UTF-8,
//! deeply nested JSON, oversized bodies, huge and negative numbers, a login without `type` —
//! each answered with the spec's status and errcode, never a 500, and nothing read afterwards
//! fails. (Malformed identifiers in every path parameter are in `bad_ids.rs`.)

use serde_json::{Value, json};
use trellis_testkit::{Client, TestServer, enc};

both_modes!(nul_is_refused_in_every_input, control_characters_are_no_failure, malformed_bodies_and_numbers);

/// Alice, Bob and a room of Alice's that Bob is in.
pub(crate) async fn setup(server: &TestServer) -> (Client, Client, String) {
    let mut alice = server.client();
    alice.register("alice", "pw").await;
    let mut bob = server.client();
    bob.register("bob", "pw").await;
    let room =
        alice.create_room(json!({"preset": "public_chat", "visibility": "public", "room_alias_name": "here"})).await;
    bob.post(&format!("/_matrix/client/v3/join/{}", enc(&room)), json!({})).await.ok();
    alice.send_text(&room, "first", "hello").await;
    (alice, bob, room)
}

/// After the corpus: every common read still answers, for everyone.
pub(crate) async fn reads_still_answer(server: &TestServer, clients: &[&Client], room: &str) {
    let r = enc(room);
    for c in clients {
        for path in [
            "/_matrix/client/v3/sync?timeout=0".to_owned(),
            format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=100"),
            format!("/_matrix/client/v3/rooms/{r}/state"),
            format!("/_matrix/client/v3/rooms/{r}/members"),
            "/_matrix/client/v3/publicRooms".to_owned(),
            "/_matrix/client/v3/joined_rooms".to_owned(),
            format!("/_matrix/client/v3/profile/{}", enc(&c.user_id)),
        ] {
            let reply = c.get(&path).await;
            assert_eq!(reply.status, 200, "{} GET {path}: {}", c.user_id, reply.body);
        }
        let found = c.post("/_matrix/client/v3/user_directory/search", json!({"search_term": "a"})).await;
        assert_eq!(found.status, 200, "{}", found.body);
    }
    server.client().get("/_matrix/client/v3/publicRooms").await.ok();
}

/// One input of the corpus: where the bad text goes.
enum Input {
    /// A path whose `{}` is replaced by the percent-encoded value.
    Path(&'static str, &'static str),
    /// A query string whose `{}` is replaced by the percent-encoded value.
    Query(&'static str),
    /// A JSON body whose string `"{}"` is replaced by the value (JSON-escaped).
    Body(&'static str, &'static str, Value),
}

/// Every input that reaches storage, a service or a lookup, with `{}` where the value goes.
fn inputs() -> Vec<(&'static str, Input)> {
    use Input::*;
    let v = || json!("{}");
    vec![
        ("room ID in a path", Path("GET", "/_matrix/client/v3/rooms/{}/state")),
        ("user ID in a path", Path("GET", "/_matrix/client/v3/profile/{}")),
        ("event ID in a path", Path("GET", "/_matrix/client/v3/rooms/ROOM/event/{}")),
        ("alias lookup", Path("GET", "/_matrix/client/v3/directory/room/{}")),
        ("alias creation", Path("PUT", "/_matrix/client/v3/directory/room/{}")),
        ("join by alias", Path("POST", "/_matrix/client/v3/join/{}")),
        ("state key", Path("PUT", "/_matrix/client/v3/rooms/ROOM/state/m.x/{}")),
        ("event type", Path("PUT", "/_matrix/client/v3/rooms/ROOM/send/{}/txn")),
        ("transaction ID", Path("PUT", "/_matrix/client/v3/rooms/ROOM/send/m.x/{}")),
        ("account data type", Path("PUT", "/_matrix/client/v3/user/ME/account_data/{}")),
        ("room tag", Path("PUT", "/_matrix/client/v3/user/ME/rooms/ROOM/tags/{}")),
        ("device ID in a path", Path("GET", "/_matrix/client/v3/devices/{}")),
        ("media ID", Path("GET", "/_matrix/client/v1/media/download/localhost/{}")),
        ("filter in /sync", Query("/_matrix/client/v3/sync?timeout=0&filter={}")),
        ("filter in /messages", Query("/_matrix/client/v3/rooms/ROOM/messages?dir=b&filter={}")),
        ("pagination token", Query("/_matrix/client/v3/rooms/ROOM/messages?dir=b&from={}")),
        ("username availability", Query("/_matrix/client/v3/register/available?username={}")),
        ("upload file name", Query("/_matrix/media/v3/upload?filename={}")),
        (
            "stored filter",
            Body("POST", "/_matrix/client/v3/user/ME/filter", json!({"room": {"timeline": {"types": [v()]}}})),
        ),
        ("invitee", Body("POST", "/_matrix/client/v3/rooms/ROOM/invite", json!({"user_id": v()}))),
        (
            "3PID session (deprecated add)",
            Body(
                "POST",
                "/_matrix/client/v3/account/3pid",
                json!({"three_pid_creds": {"sid": v(), "client_secret": "s"}}),
            ),
        ),
        (
            "3PID session",
            Body(
                "POST",
                "/_matrix/client/v3/account/3pid/add",
                json!({"sid": v(), "client_secret": "s", "auth": {"type": "m.login.password", "password": "pw"}}),
            ),
        ),
        (
            "login user",
            Body(
                "POST",
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password", "user": v(), "password": "pw"}),
            ),
        ),
        (
            "login identifier",
            Body(
                "POST",
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": v()}, "password": "pw"}),
            ),
        ),
        (
            "login password",
            Body(
                "POST",
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password", "user": "alice", "password": v()}),
            ),
        ),
        (
            "login device ID",
            Body(
                "POST",
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password", "user": "alice", "password": "pw", "device_id": v()}),
            ),
        ),
        ("login type", Body("POST", "/_matrix/client/v3/login", json!({"type": v()}))),
        (
            "register username",
            Body(
                "POST",
                "/_matrix/client/v3/register",
                json!({"username": v(), "password": "pw", "auth": {"type": "m.login.dummy"}}),
            ),
        ),
        (
            "register password",
            Body(
                "POST",
                "/_matrix/client/v3/register",
                json!({"username": "zed", "password": v(), "auth": {"type": "m.login.dummy"}}),
            ),
        ),
        (
            "register device ID",
            Body(
                "POST",
                "/_matrix/client/v3/register",
                json!({"username": "zed", "password": "pw", "device_id": v(), "auth": {"type": "m.login.dummy"}}),
            ),
        ),
        (
            "register device name",
            Body(
                "POST",
                "/_matrix/client/v3/register",
                json!({"username": "zed", "password": "pw", "initial_device_display_name": v(), "auth": {"type": "m.login.dummy"}}),
            ),
        ),
        (
            "message body",
            Body(
                "PUT",
                "/_matrix/client/v3/rooms/ROOM/send/m.room.message/t",
                json!({"msgtype": "m.text", "body": v()}),
            ),
        ),
        ("content key", Body("PUT", "/_matrix/client/v3/rooms/ROOM/send/m.x/k", json!({"{}": 1}))),
        ("room name", Body("POST", "/_matrix/client/v3/createRoom", json!({"name": v()}))),
        ("alias name", Body("POST", "/_matrix/client/v3/createRoom", json!({"room_alias_name": v()}))),
        ("display name", Body("PUT", "/_matrix/client/v3/profile/ME/displayname", json!({"displayname": v()}))),
        ("profile field", Body("PUT", "/_matrix/client/v3/profile/ME/m.tz", json!({"m.tz": v()}))),
        ("user search", Body("POST", "/_matrix/client/v3/user_directory/search", json!({"search_term": v()}))),
        (
            "room search",
            Body("POST", "/_matrix/client/v3/publicRooms", json!({"filter": {"generic_search_term": v()}})),
        ),
        ("device name", Body("PUT", "/_matrix/client/v3/devices/ME_DEVICE", json!({"display_name": v()}))),
        ("key query", Body("POST", "/_matrix/client/v3/keys/query", json!({"device_keys": {"{}": []}}))),
        (
            "status message",
            Body("PUT", "/_matrix/client/v3/presence/ME/status", json!({"presence": "online", "status_msg": v()})),
        ),
    ]
}

/// Sends `input` with `value` in it; the reply.
async fn send(c: &Client, room: &str, input: &Input, value: &str) -> trellis_testkit::Reply {
    let fill = |t: &str| {
        t.replace("ROOM", &enc(room)).replace("ME_DEVICE", &enc(&c.device_id)).replace("ME", &enc(&c.user_id))
    };
    match input {
        Input::Path(method, path) => c.raw(method, &fill(path).replace("{}", &enc(value)), b"{}".to_vec()).await,
        Input::Query(path) => c.raw("GET", &fill(path).replace("{}", &enc(value)), Vec::new()).await,
        Input::Body(method, path, body) => {
            let escaped = serde_json::to_string(value).unwrap();
            let text = body.to_string().replace("\"{}\"", &escaped);
            c.raw(method, &fill(path), text.into_bytes()).await
        }
    }
}

/// The value an input is tried with: `bad` inside something that is otherwise well formed for
/// the input (an identifier, a filter, plain text).
fn value_for(label: &str, bad: char) -> String {
    match label {
        "room ID in a path" => format!("!a{bad}b:localhost"),
        "user ID in a path" | "invitee" | "key query" => format!("@a{bad}b:localhost"),
        "event ID in a path" => format!("$a{bad}b"),
        "alias lookup" | "alias creation" | "join by alias" => format!("#a{bad}b:localhost"),
        "filter in /sync" => json!({"room": {"timeline": {"types": [format!("m{bad}")]}}}).to_string(),
        "filter in /messages" => json!({"types": [format!("m{bad}")], "contains_url": true}).to_string(),
        "pagination token" => format!("s1{bad}"),
        _ => format!("x{bad}y"),
    }
}

async fn nul_is_refused_in_every_input(server: TestServer) {
    let (alice, bob, room) = setup(&server).await;
    let mut failures = Vec::new();
    for (label, input) in inputs() {
        let reply = send(&alice, &room, &input, &value_for(label, '\0')).await;
        // In a path or a query: a bad parameter. In a JSON body: bad JSON, as Synapse answers.
        let want = match input {
            Input::Body(..) => "M_BAD_JSON",
            _ => "M_INVALID_PARAM",
        };
        if (reply.status, reply.body["errcode"].as_str()) != (400, Some(want)) {
            failures.push(format!("{label}: {} {}", reply.status, reply.body));
        }
    }
    // NUL spelled as the JSON escape inside a query's filter, with its backslash encoded.
    let filter = r#"{"room":{"timeline":{"types":["m\u0000"]}}}"#;
    alice.get(&format!("/_matrix/client/v3/sync?filter={}", enc(filter))).await.err(400, "M_INVALID_PARAM");
    assert!(failures.is_empty(), "inputs not refused as they should be:\n{}", failures.join("\n"));
    reads_still_answer(&server, &[&alice, &bob], &room).await;
}

async fn control_characters_are_no_failure(server: TestServer) {
    let (alice, bob, room) = setup(&server).await;
    let mut failures = Vec::new();
    for bad in ['\u{1}', '\u{1f}', '\u{7f}', '\n'] {
        for (label, input) in inputs() {
            let reply = send(&alice, &room, &input, &value_for(label, bad)).await;
            // The spec admits control characters in text and in historical identifiers: an
            // answer either way, never a failure.
            if reply.status >= 500 || (reply.status >= 400 && !reply.body["errcode"].is_string()) {
                failures.push(format!("{label} with {bad:?}: {} {}", reply.status, reply.body));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Where they are allowed they are kept as they were sent.
    let key = "k\u{1}\u{1f}";
    let state = format!("/_matrix/client/v3/rooms/{}/state/m.y/{}", enc(&room), enc(key));
    alice.put(&state, json!({"v": "a\u{7f}b"})).await.ok();
    assert_eq!(bob.get(&state).await.ok(), json!({"v": "a\u{7f}b"}));
    // Where they are not, the spec's errcode.
    let c = server.client();
    c.post(
        "/_matrix/client/v3/register",
        json!({"username": "a\u{1}", "password": "pw", "auth": {"type": "m.login.dummy"}}),
    )
    .await
    .err(400, "M_INVALID_USERNAME");
    c.post("/_matrix/client/v3/login", json!({"type": "m.login.password", "user": "a\u{1}", "password": "pw"}))
        .await
        .err(403, "M_FORBIDDEN");
    reads_still_answer(&server, &[&alice, &bob], &room).await;
}

async fn malformed_bodies_and_numbers(server: TestServer) {
    let (alice, bob, room) = setup(&server).await;
    let r = enc(&room);
    let send = |txn: &str| format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/{txn}");
    let anon = server.client();

    // Not UTF-8, not JSON at all.
    alice.raw("PUT", &send("u1"), b"{\"body\":\"\xff\xfe\"}".to_vec()).await.err(400, "M_NOT_JSON");
    anon.raw("POST", "/_matrix/client/v3/register", b"{\"username\":\"\xc3\x28\"}".to_vec())
        .await
        .err(400, "M_NOT_JSON");
    anon.raw("POST", "/_matrix/client/v3/login", b"{\"type\":\"m.login.password\",\"user\":\"\xc3\"}".to_vec())
        .await
        .err(400, "M_NOT_JSON");
    alice.raw("PUT", &send("u2"), b"{\"body\":\"a\0b\"}".to_vec()).await.err(400, "M_NOT_JSON");

    // Nested 10,000 deep: refused by the parser's depth limit, not by exhausting the stack.
    let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    alice.raw("PUT", &send("d1"), deep_object.clone().into_bytes()).await.err(400, "M_NOT_JSON");
    anon.raw("POST", "/_matrix/client/v3/login", deep_object.into_bytes()).await.err(400, "M_NOT_JSON");
    let deep_array = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    alice.raw("PUT", &send("d2"), deep_array.clone().into_bytes()).await.err(400, "M_NOT_JSON");
    let create = format!("{{\"creation_content\":{deep_array}}}");
    alice.raw("POST", "/_matrix/client/v3/createRoom", create.into_bytes()).await.err(400, "M_BAD_JSON");
    // Deep in a field the endpoint ignores, it is skipped without recursion: no harm, no error.
    let ignored = format!("{{\"unknown\":{deep_array}}}");
    alice.raw("POST", "/_matrix/client/v3/createRoom", ignored.into_bytes()).await.ok();
    let deep_filter = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    alice.get(&format!("/_matrix/client/v3/sync?filter={}", enc(&deep_filter))).await.err(400, "M_NOT_JSON");
    // Nested within the limit is content like any other.
    let nested = format!("{{\"body\":\"x\",\"n\":{}1{}}}", "{\"a\":".repeat(50), "}".repeat(50));
    alice.raw("PUT", &send("d3"), nested.into_bytes()).await.ok();

    // Oversized bodies, authenticated or not.
    let big = |field: &str| format!("{{\"{field}\":\"{}\"}}", "x".repeat(2 * 1024 * 1024)).into_bytes();
    alice.raw("PUT", &send("o1"), big("body")).await.err(413, "M_TOO_LARGE");
    anon.raw("POST", "/_matrix/client/v3/login", big("type")).await.err(413, "M_TOO_LARGE");
    anon.raw("POST", "/_matrix/client/v3/register", big("username")).await.err(413, "M_TOO_LARGE");

    // Numbers JSON can write but events cannot hold, and limits out of range.
    alice.raw("PUT", &send("n1"), b"{\"body\":\"x\",\"n\":1e400}".to_vec()).await.err(400, "M_NOT_JSON");
    for n in ["9007199254740993", "-9007199254740993", "123456789012345678901234567890", "1.5"] {
        let body = format!("{{\"body\":\"x\",\"n\":{n}}}").into_bytes();
        alice.raw("PUT", &send(&format!("n{n}")), body).await.err(400, "M_BAD_JSON");
    }
    let levels = format!("/_matrix/client/v3/rooms/{r}/state/m.room.power_levels");
    alice.raw("PUT", &levels, b"{\"users\":{\"@alice:localhost\":1e20}}".to_vec()).await.err(400, "M_BAD_JSON");
    for limit in ["-1", "99999999999999999999", "ten"] {
        alice
            .get(&format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&limit={limit}"))
            .await
            .err(400, "M_INVALID_PARAM");
        alice
            .get(&format!("/_matrix/client/v1/rooms/{r}/timestamp_to_event?dir=f&ts={limit}"))
            .await
            .err(400, "M_INVALID_PARAM");
    }
    for timeout in ["-5", "99999999999999999999"] {
        alice.get(&format!("/_matrix/client/v3/sync?timeout={timeout}")).await.err(400, "M_INVALID_PARAM");
    }
    for limit in [json!(-1), json!(1e30), json!(18446744073709551616u128 as f64)] {
        alice.post("/_matrix/client/v3/publicRooms", json!({"limit": limit})).await.err(400, "M_BAD_JSON");
        let search = json!({"search_term": "a", "limit": limit});
        alice.post("/_matrix/client/v3/user_directory/search", search).await.err(400, "M_BAD_JSON");
        let filter = json!({"room": {"timeline": {"limit": limit}}}).to_string();
        alice.get(&format!("/_matrix/client/v3/sync?filter={}", enc(&filter))).await.err(400, "M_BAD_JSON");
    }

    // A login without `type` (ruma's parser panics on it) and other malformed logins.
    for body in [json!({}), json!({"user": "alice", "password": "pw"}), json!({"type": 5}), json!({"type": null})] {
        anon.post("/_matrix/client/v3/login", body).await.err(400, "M_BAD_JSON");
    }
    anon.raw("POST", "/_matrix/client/v3/login", b"[]".to_vec()).await.err(400, "M_BAD_JSON");

    reads_still_answer(&server, &[&alice, &bob], &room).await;
}
