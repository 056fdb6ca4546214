//! The one error type of Trellis: a Matrix error (errcode, message, HTTP status, extra body
//! fields) or an internal failure whose text never reaches a client.

use std::fmt;

use serde_json::{Map, Value};

/// Result alias used across every service.
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal)),* $(,)?) => {
        /// A Matrix `errcode` together with its default HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            /// The wire form, e.g. `M_FORBIDDEN`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status this errcode is answered with unless an error overrides it.
            pub fn default_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// Parses the wire form; unknown codes become [`ErrorCode::Unknown`].
            pub fn parse(code: &str) -> ErrorCode {
                match code { $($code => ErrorCode::$variant,)* _ => ErrorCode::Unknown }
            }
        }
    };
}

// The status of each code follows the client-server API's "Common error codes" section.
error_codes! {
    Forbidden => ("M_FORBIDDEN", 403),
    UnknownToken => ("M_UNKNOWN_TOKEN", 401),
    MissingToken => ("M_MISSING_TOKEN", 401),
    BadJson => ("M_BAD_JSON", 400),
    NotJson => ("M_NOT_JSON", 400),
    NotFound => ("M_NOT_FOUND", 404),
    LimitExceeded => ("M_LIMIT_EXCEEDED", 429),
    Unrecognized => ("M_UNRECOGNIZED", 404),
    Unknown => ("M_UNKNOWN", 500),
    UserDeactivated => ("M_USER_DEACTIVATED", 403),
    UserInUse => ("M_USER_IN_USE", 400),
    InvalidUsername => ("M_INVALID_USERNAME", 400),
    RoomInUse => ("M_ROOM_IN_USE", 400),
    BadAlias => ("M_BAD_ALIAS", 400),
    InvalidRoomState => ("M_INVALID_ROOM_STATE", 400),
    TooLarge => ("M_TOO_LARGE", 413),
    MissingParam => ("M_MISSING_PARAM", 400),
    InvalidParam => ("M_INVALID_PARAM", 400),
    UnsupportedRoomVersion => ("M_UNSUPPORTED_ROOM_VERSION", 400),
    IncompatibleRoomVersion => ("M_INCOMPATIBLE_ROOM_VERSION", 400),
    BadState => ("M_BAD_STATE", 400),
    GuestAccessForbidden => ("M_GUEST_ACCESS_FORBIDDEN", 403),
    Exclusive => ("M_EXCLUSIVE", 400),
    NotYetUploaded => ("M_NOT_YET_UPLOADED", 504),
    CannotOverwriteMedia => ("M_CANNOT_OVERWRITE_MEDIA", 409),
    WrongRoomKeysVersion => ("M_WRONG_ROOM_KEYS_VERSION", 403),
    InvalidSignature => ("M_INVALID_SIGNATURE", 400),
    WeakPassword => ("M_WEAK_PASSWORD", 400),
    ThreepidInUse => ("M_THREEPID_IN_USE", 400),
    ThreepidNotFound => ("M_THREEPID_NOT_FOUND", 400),
    ThreepidDenied => ("M_THREEPID_DENIED", 403),
    ServerNotTrusted => ("M_SERVER_NOT_TRUSTED", 400),
    // A 3PID validation token that is wrong or expired, or a session not validated.
    ThreepidAuthFailed => ("M_THREEPID_AUTH_FAILED", 400),
    ThreepidMediumNotSupported => ("M_THREEPID_MEDIUM_NOT_SUPPORTED", 400),
    ResourceLimitExceeded => ("M_RESOURCE_LIMIT_EXCEEDED", 403),
    UserLocked => ("M_USER_LOCKED", 401),
    // The request was not correctly authorized (a registration token that is not usable).
    Unauthorized => ("M_UNAUTHORIZED", 401),
    UserSuspended => ("M_USER_SUSPENDED", 403),
    KeyTooLarge => ("M_KEY_TOO_LARGE", 400),
    ProfileTooLarge => ("M_PROFILE_TOO_LARGE", 400),
    // Simplified Sliding Sync (MSC4186): a `pos` the server no longer knows; the client
    // starts its connection again.
    UnknownPos => ("M_UNKNOWN_POS", 400),
    // `POST /appservice/{id}/ping` (spec 1.7): the appservice has no URL, answered an
    // error, could not be reached, or took too long.
    UrlNotSet => ("M_URL_NOT_SET", 400),
    BadStatus => ("M_BAD_STATUS", 502),
    ConnectionFailed => ("M_CONNECTION_FAILED", 502),
    ConnectionTimeout => ("M_CONNECTION_TIMEOUT", 504),
    // Not an errcode: a user-interactive-auth challenge (401 with flows and no errcode).
    UiaRequired => ("M_UIA_REQUIRED", 401),
}

/// A refusal with a Matrix errcode: everything needed to render the client's JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixError {
    pub code: ErrorCode,
    pub message: String,
    pub status: u16,
    /// Extra top-level body fields (`retry_after_ms`, `soft_logout`, UIA `flows`, ...).
    pub extra: Map<String, Value>,
}

impl MatrixError {
    /// The JSON body a client receives.
    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        if self.code != ErrorCode::UiaRequired {
            body.insert("errcode".into(), Value::String(self.code.as_str().into()));
            body.insert("error".into(), Value::String(self.message.clone()));
        }
        Value::Object(body)
    }

    /// Rebuilds an error from [`MatrixError::body`] plus its status (used after a gRPC hop).
    pub fn from_body(status: u16, body: Value) -> Option<MatrixError> {
        let Value::Object(mut extra) = body else { return None };
        let code = match extra.remove("errcode") {
            Some(Value::String(code)) => ErrorCode::parse(&code),
            Some(_) => return None,
            None => ErrorCode::UiaRequired,
        };
        let message = match extra.remove("error") {
            Some(Value::String(m)) => m,
            _ => String::new(),
        };
        Some(MatrixError { code, message, status, extra })
    }
}

enum Repr {
    Matrix(Box<MatrixError>),
    Internal(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Every failure in Trellis. Build Matrix errors with the constructors, wrap anything else
/// with `?` (it becomes an internal error answered as `M_UNKNOWN`).
pub struct Error(Repr);

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error(Repr::Matrix(Box::new(MatrixError {
            code,
            message: message.into(),
            status: code.default_status(),
            extra: Map::new(),
        })))
    }

    /// An internal error: logged at the edge, answered as a generic `M_UNKNOWN`.
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Error {
        Error(Repr::Internal(err.into()))
    }

    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Forbidden, message)
    }
    /// A suspended account tried what it may not (spec 1.13, account suspension).
    pub fn suspended() -> Error {
        Error::new(ErrorCode::UserSuspended, "You cannot perform this action while suspended.")
    }
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::NotFound, message)
    }
    pub fn bad_json(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::BadJson, message)
    }
    pub fn invalid_param(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidParam, message)
    }
    pub fn missing_param(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::MissingParam, message)
    }
    pub fn unrecognized(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Unrecognized, message)
    }
    pub fn too_large(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::TooLarge, message)
    }

    /// A user-interactive-auth challenge: HTTP 401 whose body is exactly `body`
    /// (`flows`, `params`, `session`, `completed`, plus `errcode`/`error` after a failed stage).
    pub fn uia(body: Map<String, Value>) -> Error {
        let mut err = MatrixError::from_body(401, Value::Object(body)).unwrap_or(MatrixError {
            code: ErrorCode::UiaRequired,
            message: String::new(),
            status: 401,
            extra: Map::new(),
        });
        err.status = 401;
        Error(Repr::Matrix(Box::new(err)))
    }

    pub fn from_matrix(err: MatrixError) -> Error {
        Error(Repr::Matrix(Box::new(err)))
    }

    /// Overrides the HTTP status (e.g. 405 for `M_UNRECOGNIZED` on a wrong method).
    pub fn with_status(mut self, status: u16) -> Error {
        if let Repr::Matrix(m) = &mut self.0 {
            m.status = status;
        }
        self
    }

    /// Adds an extra top-level field to the body.
    pub fn with_field(mut self, key: &str, value: impl Into<Value>) -> Error {
        if let Repr::Matrix(m) = &mut self.0 {
            m.extra.insert(key.to_owned(), value.into());
        }
        self
    }

    pub fn matrix(&self) -> Option<&MatrixError> {
        match &self.0 {
            Repr::Matrix(m) => Some(m),
            Repr::Internal(_) => None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.matrix().map_or(ErrorCode::Unknown, |m| m.code)
    }

    pub fn is_internal(&self) -> bool {
        matches!(self.0, Repr::Internal(_))
    }

    /// The HTTP status a client receives.
    pub fn status(&self) -> u16 {
        self.matrix().map_or(500, |m| m.status)
    }

    /// The JSON body a client receives; internal errors never show their text.
    pub fn client_body(&self) -> Value {
        match &self.0 {
            Repr::Matrix(m) => m.body(),
            Repr::Internal(_) => serde_json::json!({
                "errcode": "M_UNKNOWN",
                "error": "Internal server error",
            }),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Matrix(m) => write!(f, "{}: {}", m.code.as_str(), m.message),
            Repr::Internal(e) => write!(f, "internal: {e:?}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Matrix(m) => write!(f, "{} ({}): {}", m.code.as_str(), m.status, m.message),
            Repr::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

macro_rules! internal_from {
    ($($ty:ty),* $(,)?) => {
        $(impl From<$ty> for Error {
            fn from(err: $ty) -> Error { Error::internal(err) }
        })*
    };
}

internal_from!(std::io::Error, serde_json::Error, anyhow::Error, tokio::task::JoinError,);

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Error {
        if database_unreachable(&err) { database_unavailable(&err) } else { Error::internal(err) }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Error {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Backend(e) => e.into(),
            // No connection could be had in time, or none could be opened: the database is
            // away (restarting, failing over) or overloaded; the request may be tried again.
            PoolError::Timeout(_) | PoolError::Closed => database_unavailable(&err),
            other => Error::internal(other),
        }
    }
}

/// Whether `err` says the database could not be reached or dropped the connection (a restart,
/// a failover, a network cut) rather than refusing a statement (which is a bug: a 500).
fn database_unreachable(err: &tokio_postgres::Error) -> bool {
    match err.code() {
        // Connection exceptions (class 08) and "operator intervention" (57P01–57P03: admin or
        // crash shutdown, cannot connect now).
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: the connection closed under the statement or failed at the socket
        // (conversion and row-count errors are bugs, not outages).
        None => {
            err.is_closed()
                || std::error::Error::source(err).is_some_and(|e| e.downcast_ref::<std::io::Error>().is_some())
        }
    }
}

/// 503 `M_UNKNOWN`: what a client sees while the database is away. The cause is logged
/// here, since the client's body never carries internal text.
fn database_unavailable(err: &dyn std::error::Error) -> Error {
    tracing::warn!(error = %err, "database unavailable");
    Error::new(ErrorCode::Unknown, "The server's database is unavailable; try again shortly").with_status(503)
}

impl From<ruma::IdParseError> for Error {
    fn from(err: ruma::IdParseError) -> Error {
        Error::invalid_param(format!("invalid identifier: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_database_is_a_503_not_a_500() {
        // Nothing listens on port 1: the connection attempt fails without a SQLSTATE.
        let refused = tokio_postgres::connect("host=127.0.0.1 port=1 user=x connect_timeout=5", tokio_postgres::NoTls)
            .await
            .err()
            .expect("nothing listens there");
        let err = Error::from(refused);
        assert_eq!((err.status(), err.code()), (503, ErrorCode::Unknown));
        assert!(!err.is_internal());
        let timeout = Error::from(deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait));
        assert_eq!(timeout.status(), 503);
        assert_eq!(Error::from(deadpool_postgres::PoolError::Closed).status(), 503);
    }

    #[test]
    fn matrix_error_body_round_trips() {
        let err = Error::new(ErrorCode::LimitExceeded, "slow down").with_field("retry_after_ms", 500);
        let m = err.matrix().unwrap();
        assert_eq!(err.status(), 429);
        let back = MatrixError::from_body(m.status, m.body()).unwrap();
        assert_eq!(&back, m);
        assert_eq!(err.client_body()["retry_after_ms"], 500);
    }

    #[test]
    fn uia_body_has_no_errcode_until_a_stage_fails() {
        let mut body = Map::new();
        body.insert("session".into(), "abc".into());
        let err = Error::uia(body.clone());
        assert_eq!(err.status(), 401);
        assert_eq!(err.client_body(), serde_json::json!({"session": "abc"}));

        body.insert("errcode".into(), "M_FORBIDDEN".into());
        body.insert("error".into(), "wrong password".into());
        let err = Error::uia(body);
        assert_eq!(err.status(), 401);
        assert_eq!(err.code(), ErrorCode::Forbidden);
        assert_eq!(err.client_body()["errcode"], "M_FORBIDDEN");
    }

    #[test]
    fn internal_text_never_reaches_the_client() {
        let err = Error::internal(std::io::Error::other("secret path /etc/x"));
        assert_eq!(err.status(), 500);
        assert!(!err.client_body().to_string().contains("secret"));
        assert_eq!(err.client_body()["errcode"], "M_UNKNOWN");
    }

    #[test]
    fn every_code_parses_back() {
        for code in [ErrorCode::Forbidden, ErrorCode::NotJson, ErrorCode::TooLarge] {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
        assert_eq!(ErrorCode::parse("M_SOMETHING_NEW"), ErrorCode::Unknown);
    }
}
