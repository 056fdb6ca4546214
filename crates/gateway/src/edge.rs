//! The edge every request passes first: the first generation of paths
//! (`/_matrix/client/api/v1/...`) rewritten to r0 so the oldest tutorials reach the same
//! handlers, any `OPTIONS` request (a CORS preflight or not) answered at once as Synapse does,
//! and the CORS headers browsers need on every response. A plain tower service: every request
//! pays for it, so it boxes nothing.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use axum::{
    Json,
    extract::Request,
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::future::{Either, MapOk, Ready, TryFutureExt, ready};
use tower::{Layer, Service};

#[derive(Clone, Copy)]
pub(crate) struct EdgeLayer;

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge(inner)
    }
}

#[derive(Clone)]
pub(crate) struct Edge<S>(S);

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Answer>, MapOk<S::Future, fn(Response) -> Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Answer<()>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if req.method() == Method::OPTIONS {
            let answer = (StatusCode::OK, Json(serde_json::json!({}))).into_response();
            return Either::Left(ready(Ok(with_cors(answer))));
        }
        if let Err(e) = crate::input::check_uri(req.uri()) {
            return Either::Left(ready(Ok(with_cors(crate::error::ApiError(e).into_response()))));
        }
        rewrite_api_v1(&mut req);
        Either::Right(self.0.call(req).map_ok(with_cors as fn(Response) -> Response))
    }
}

type Answer<T = Response> = Result<T, Infallible>;

const API_V1: &str = "/_matrix/client/api/v1/";

fn rewrite_api_v1(req: &mut Request) {
    let Some(rest) = req.uri().path().strip_prefix(API_V1) else { return };
    let mut path = format!("/_matrix/client/r0/{rest}");
    if let Some(q) = req.uri().query() {
        path.push('?');
        path.push_str(q);
    }
    if let Ok(uri) = path.parse() {
        *req.uri_mut() = uri;
    }
}

fn with_cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization, Date"),
    );
    response
}
