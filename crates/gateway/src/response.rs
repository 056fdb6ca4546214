//! Typed answers, serialised in this one place: an endpoint's ruma response type as its
//! metadata says, so the compiler checks every answer against the spec; or, where a service
//! renders the body itself, that JSON marked with the response type it stands for.

use std::marker::PhantomData;

use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use ruma::api::{OutgoingResponse, OutgoingResponseExt};
use trellis_core::Error;

use crate::error::ApiError;

/// What a handler of an endpoint whose ruma response type is `R` may answer.
pub trait Reply<R>: Send {
    fn into_answer(self) -> Response;
}

impl<R: OutgoingResponse + Send> Reply<R> for R {
    fn into_answer(self) -> Response {
        match self.try_into_http_response::<BytesMut>() {
            Ok(response) => response.map(|body| Body::from(body.freeze())).into_response(),
            Err(e) => ApiError(Error::internal(format!("serialising a response: {e}"))).into_response(),
        }
    }
}

/// The body of `R`, rendered as JSON elsewhere: by the service that owns it (events and
/// `/sync` cross gRPC as rendered JSON, and the gateway embeds them without parsing them
/// again), or in Synapse's shape where ruma's type cannot express it (the call site says
/// why).
pub struct Rendered<R> {
    json: String,
    answers: PhantomData<fn() -> R>,
}

impl<R> Rendered<R> {
    /// JSON a service rendered.
    pub fn new(json: String) -> Rendered<R> {
        Rendered { json, answers: PhantomData }
    }

    /// A body in a shape of our own (see the call site for why ruma's type will not do).
    pub fn shaped(body: &impl serde::Serialize) -> Result<Rendered<R>, ApiError> {
        Ok(Rendered::new(serde_json::to_string(body)?))
    }
}

impl<R> Reply<R> for Rendered<R> {
    fn into_answer(self) -> Response {
        let mut response = self.json.into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl<R> IntoResponse for Rendered<R> {
    fn into_response(self) -> Response {
        self.into_answer()
    }
}
