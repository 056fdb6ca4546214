//! Errors across a gRPC hop: a Matrix error travels as the status details (its client body
//! and HTTP status as JSON) plus a `trellis-errcode` metadata entry, so the gateway answers
//! exactly what the service decided. Internal errors are logged where they happen and cross
//! as a bare `INTERNAL` status.

use serde_json::{Value, json};
use tonic::{Code, Status};
use trellis_core::{Error, MatrixError};

/// Metadata key carrying the errcode, readable by any gRPC tooling.
pub const ERRCODE_METADATA: &str = "trellis-errcode";

/// Turns a service error into a gRPC status.
pub fn from_error(err: Error) -> Status {
    let Some(m) = err.matrix() else {
        tracing::error!(error = ?err, "internal error");
        return Status::internal("internal error");
    };
    let code = match m.status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 | 405 => Code::NotFound,
        409 => Code::AlreadyExists,
        413 => Code::OutOfRange,
        429 => Code::ResourceExhausted,
        504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    let details = json!({ "status": m.status, "body": m.body() }).to_string();
    let mut status = Status::with_details(code, m.message.clone(), details.into_bytes().into());
    if let Ok(v) = m.code.as_str().parse() {
        status.metadata_mut().insert(ERRCODE_METADATA, v);
    }
    status
}

/// Turns a gRPC status back into the error the service returned.
pub fn to_error(status: Status) -> Error {
    if let Ok(Value::Object(mut details)) = serde_json::from_slice::<Value>(status.details()) {
        let http = details.get("status").and_then(Value::as_u64).unwrap_or(500) as u16;
        if let Some(m) = details.remove("body").and_then(|b| MatrixError::from_body(http, b)) {
            return Error::from_matrix(m);
        }
    }
    match status.code() {
        // The service could not be reached (or went away mid-call): worth a retry elsewhere,
        // and answered as 503 rather than an internal error.
        Code::Unavailable | Code::Cancelled | Code::Unknown if status.details().is_empty() => {
            Error::new(trellis_core::ErrorCode::Unknown, "Service temporarily unavailable").with_status(503)
        }
        _ => Error::internal(format!("grpc call failed: {:?}: {}", status.code(), status.message())),
    }
}

/// Whether an error says the service was unreachable rather than answering.
pub fn is_unavailable(err: &Error) -> bool {
    err.status() == 503 && err.code() == trellis_core::ErrorCode::Unknown
}

#[cfg(test)]
mod tests {
    use trellis_core::ErrorCode;

    use super::*;

    #[test]
    fn matrix_errors_survive_the_hop() {
        let err = Error::new(ErrorCode::LimitExceeded, "slow").with_field("retry_after_ms", 10);
        let status = from_error(err);
        assert_eq!(status.metadata().get(ERRCODE_METADATA).unwrap(), "M_LIMIT_EXCEEDED");
        let back = to_error(status);
        assert_eq!(back.code(), ErrorCode::LimitExceeded);
        assert_eq!(back.status(), 429);
        assert_eq!(back.client_body()["retry_after_ms"], 10);
    }

    #[test]
    fn internal_errors_stay_internal() {
        let status = from_error(Error::internal(std::io::Error::other("disk on fire")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("disk"));
        assert!(to_error(status).is_internal());
    }
}
