//! Input no handler should ever see: NUL (U+0000) in a request's path, its query or a JSON
//! body, refused here once for every endpoint. No Matrix identifier, event type, state key or
//! text may hold NUL (the spec excludes it from every identifier grammar, and Synapse refuses
//! it in JSON with `M_BAD_JSON`); PostgreSQL cannot store it in `text` nor read the `\u0000`
//! escape back as `jsonb`, so letting one through would turn a bad request into a 500, or
//! worse, into a stored row that fails every later read.
//!
//! Path parameters that hold an identifier are checked against its grammar here, on every
//! route, whatever its handler does next (`M_INVALID_PARAM`); a user ID or room alias with an
//! empty localpart (`@:server`, `#:server`) is refused too: both grammars want at least one
//! character, and no such user or alias can exist.
//!
//! Also here: a request parser that panics (ruma's `/login` parser does on a body without
//! `type`) is a malformed request, answered 400 and logged in one line, not a 500 with a
//! backtrace.

use std::{
    cell::Cell,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Once,
};

use axum::{
    extract::{FromRequestParts, RawPathParams, Request},
    http::Uri,
    middleware::Next,
    response::{IntoResponse, Response},
};
use trellis_core::Error;

use crate::error::ApiError;

/// `M_INVALID_PARAM` if the path or the query of `uri` holds NUL, percent-encoded or as a
/// JSON escape inside a query value (`filter={"types":["\u0000"]}`).
pub(crate) fn check_uri(uri: &Uri) -> Result<(), Error> {
    if uri.path().contains("%00") {
        return Err(Error::invalid_param("NUL is not allowed in a request path"));
    }
    let Some(query) = uri.query() else { return Ok(()) };
    if query.contains("%00") || json_has_nul(query.as_bytes()) {
        return Err(Error::invalid_param("NUL is not allowed in a query parameter"));
    }
    // A value may spell the escape's backslash percent-encoded (`%5Cu0000`).
    if query.contains('%')
        && let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        && pairs.iter().any(|(k, v)| [k, v].iter().any(|t| t.contains('\0') || json_has_nul(t.as_bytes())))
    {
        return Err(Error::invalid_param("NUL is not allowed in a query parameter"));
    }
    Ok(())
}

/// A route layer: `M_INVALID_PARAM` for an identifier path parameter (named as ruma's
/// endpoint metadata names them) that breaks its grammar.
pub(crate) async fn check_path_ids(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Ok(params) = RawPathParams::from_request_parts(&mut parts, &()).await {
        for (name, value) in params.iter() {
            if let Err(e) = check_id(name, value) {
                return ApiError(e).into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Checks the path parameter `name` if it holds an identifier.
fn check_id(name: &str, value: &str) -> Result<(), Error> {
    use ruma::{EventId, RoomId, RoomOrAliasId};
    use trellis_core::ids::{parse_room_alias, parse_user_id};
    let refused = |e: ruma::IdParseError| Error::invalid_param(format!("invalid {name}: {e}"));
    match name {
        "user_id" => parse_user_id(value).map(drop),
        "room_alias" => parse_room_alias(value).map(drop),
        "room_id" => RoomId::parse(value).map(drop).map_err(refused),
        "event_id" => EventId::parse(value).map(drop).map_err(refused),
        "room_id_or_alias" => match RoomOrAliasId::parse(value).map_err(refused)? {
            id if id.is_room_alias_id() => parse_room_alias(value).map(drop),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// `M_BAD_JSON` if a JSON body holds the escape `\u0000` in a string or a key. (A raw NUL
/// byte is no JSON at all: the parser answers `M_NOT_JSON`.)
pub(crate) fn check_json(body: &[u8]) -> Result<(), Error> {
    match json_has_nul(body) {
        true => Err(Error::bad_json("NUL (\\u0000) is not allowed in JSON strings")),
        false => Ok(()),
    }
}

/// Whether `text` holds `\u0000` as an escape, that is after an even number of backslashes
/// (`\\u0000` is a backslash followed by the letters `u0000`). In JSON a backslash only ever
/// starts an escape inside a string, so one pass over the bytes is enough.
fn json_has_nul(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\\' => {
                if text[i + 1..].starts_with(b"u0000") {
                    return true;
                }
                // Skip the escaped character, whatever it is.
                i += 2;
            }
            _ => i += 1,
        }
    }
    false
}

thread_local! {
    /// Set while this thread runs a request parser under [`parse_or_refuse`].
    static PARSING: Cell<bool> = const { Cell::new(false) };
}

/// Runs a request parser; a panic inside it becomes `M_BAD_JSON` for this request. The panic
/// is logged as one warning line (the process's own hook, which may print a long backtrace,
/// is for real bugs).
pub(crate) fn parse_or_refuse<T>(parse: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    quiet_parser_panics();
    PARSING.with(|p| p.set(true));
    let result = catch_unwind(AssertUnwindSafe(parse));
    PARSING.with(|p| p.set(false));
    result.unwrap_or_else(|_| Err(Error::bad_json("The request body could not be parsed")))
}

/// Installs, once, a panic hook that logs a parser's panic in one line and hands every other
/// panic to the hook that was there before.
fn quiet_parser_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if PARSING.with(Cell::get) {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                tracing::warn!(at = %at, panic = %panic_text(info.payload()).unwrap_or(""), "request parser panicked");
            } else {
                previous(info);
            }
        }));
    });
}

/// A panic's message, when it has one (`panic!` with a literal or a formatted string).
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_escapes_and_only_those() {
        assert!(json_has_nul(br#"{"a":"x\u0000y"}"#));
        assert!(json_has_nul(br#"{"\u0000":1}"#));
        assert!(json_has_nul(br#"{"a":"\\\u0000"}"#), "an escaped backslash, then the escape");
        assert!(!json_has_nul(b"{\"a\":\"\0\"}"), "a raw NUL is left to the parser");
        assert!(!json_has_nul(br#"{"a":"\\u0000"}"#), "a backslash and the letters u0000");
        assert!(!json_has_nul(br#"{"a":"\u0001 \"u0000\""}"#));
        assert!(!json_has_nul(br"trailing \"));
    }

    #[test]
    fn refuses_nul_in_paths_and_queries() {
        let bad = [
            "/_matrix/client/v3/rooms/%21a%00%3Ax/state",
            "/_matrix/client/v3/sync?filter=%7B%22types%22%3A%5B%22%00%22%5D%7D",
            "/_matrix/client/v3/sync?filter=%7B%22types%22%3A%5B%22%5Cu0000%22%5D%7D",
            "/_matrix/client/v3/sync?filter=%7B%22types%22%3A%5B%22%5cu0000%22%5D%7D",
        ];
        for uri in bad {
            let err = check_uri(&uri.parse().unwrap()).unwrap_err();
            assert_eq!(err.code(), trellis_core::ErrorCode::InvalidParam, "{uri}");
        }
        for uri in ["/_matrix/client/v3/sync?since=s1&filter=%7B%7D", "/_matrix/client/v3/rooms/%21a%3Ax/state"] {
            assert!(check_uri(&uri.parse().unwrap()).is_ok(), "{uri}");
        }
    }

    #[test]
    fn identifier_parameters_follow_their_grammar() {
        for (name, bad) in [
            ("user_id", "alice"),
            ("user_id", "@:localhost"),
            ("room_alias", "#:localhost"),
            ("room_id", "no-sigil"),
            ("event_id", "!a:b"),
            ("room_id_or_alias", "@a:b"),
            ("room_id_or_alias", "#:localhost"),
        ] {
            assert!(check_id(name, bad).is_err(), "{name} {bad}");
        }
        for (name, good) in
            [("user_id", "@a:b"), ("room_id_or_alias", "#a:b"), ("room_id_or_alias", "!a:b"), ("txn_id", "x")]
        {
            assert!(check_id(name, good).is_ok(), "{name} {good}");
        }
    }

    #[test]
    fn a_panicking_parser_is_a_bad_request() {
        let err = parse_or_refuse::<()>(|| panic!("no entry found for key")).unwrap_err();
        assert_eq!(err.code(), trellis_core::ErrorCode::BadJson);
        assert_eq!(err.status(), 400);
        assert_eq!(parse_or_refuse(|| Ok(5)).unwrap(), 5);
    }
}
