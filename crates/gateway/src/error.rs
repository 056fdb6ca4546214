//! The gateway's error response: one mapping from `trellis_core::Error` to an HTTP status and
//! the spec's JSON body. Internal errors are logged here, once, with the trace ID; the client
//! only ever sees `M_UNKNOWN`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use trellis_core::{Error, ErrorCode};

/// An error on its way to the client.
pub struct ApiError(pub Error);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError(e)
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> ApiError {
        ApiError(Error::internal(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let err = self.0;
        if err.is_internal() {
            // The trace to look the failure up in, when traces are exported.
            let trace = tracing::Span::current().context().span().span_context().clone();
            if trace.is_valid() {
                tracing::error!(error = ?err, trace_id = %trace.trace_id(), "internal error");
            } else {
                tracing::error!(error = ?err, "internal error");
            }
        }
        let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(err.client_body())).into_response();
        if err.code() == ErrorCode::LimitExceeded
            && let Some(ms) = err.client_body().get("retry_after_ms").and_then(|v| v.as_u64())
            && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

pub fn unrecognized() -> ApiError {
    ApiError(Error::unrecognized("Unrecognized request"))
}
