//! Typed answers: an endpoint's ruma response type, serialised once here as its metadata
//! says, so the compiler checks every answer against the spec.

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use ruma::api::{OutgoingResponse, OutgoingResponseExt};
use trellis_core::Error;

use crate::error::ApiError;

/// A ruma response on its way to the client.
pub struct RumaResponse<T>(pub T);

/// What a typed handler returns.
pub type RumaResult<T> = Result<RumaResponse<T>, ApiError>;

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(response) => response.map(|body| Body::from(body.freeze())).into_response(),
            Err(e) => ApiError(Error::internal(format!("serialising a response: {e}"))).into_response(),
        }
    }
}

impl<T> From<T> for RumaResponse<T> {
    fn from(value: T) -> RumaResponse<T> {
        RumaResponse(value)
    }
}
