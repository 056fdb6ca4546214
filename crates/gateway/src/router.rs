//! The router: endpoint routes from `client/`, registered on every historical path of their
//! ruma metadata; the edge behaviour every path shares (CORS and `OPTIONS`, `M_UNRECOGNIZED`
//! 404/405 fallbacks, panics as `M_UNKNOWN`); per-route tracing spans and Prometheus metrics.

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    handler::Handler,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use opentelemetry::propagation::Extractor;
use ruma::api::{Metadata, path_builder::PathBuilder};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{AppState, GatewaySettings, Services, client, error::unrecognized};

/// The complete HTTP application.
pub fn router(services: Services, settings: GatewaySettings) -> Router {
    let app = routes(services, settings);
    // The first generation of paths (`/_matrix/client/api/v1/...`) is rewritten to r0 before
    // routing, so the oldest tutorials reach the same handlers.
    Router::new().fallback_service(tower::ServiceBuilder::new().layer(middleware::from_fn(api_v1)).service(app))
}

const API_V1: &str = "/_matrix/client/api/v1/";

async fn api_v1(mut req: Request, next: Next) -> Response {
    if let Some(rest) = req.uri().path().strip_prefix(API_V1) {
        let mut path = format!("/_matrix/client/r0/{rest}");
        if let Some(q) = req.uri().query() {
            path.push('?');
            path.push_str(q);
        }
        if let Ok(uri) = path.parse() {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
}

fn routes(services: Services, settings: GatewaySettings) -> Router {
    let tokens = (!settings.token_cache.is_zero())
        .then(|| Arc::new(crate::tokens::TokenCache::new(settings.token_cache, 200_000)));
    let state = AppState { services: Arc::new(services), settings: Arc::new(settings), tokens };
    client::routes()
        .route("/metrics", axum::routing::get(metrics))
        .route_layer(middleware::from_fn(observe))
        .method_not_allowed_fallback(|| async {
            crate::error::ApiError(trellis_core::Error::unrecognized("Unrecognized request").with_status(405))
        })
        .fallback(fallback)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn(cors))
        .with_state(state)
}

/// Registration of ruma endpoints on all their paths.
pub(crate) trait RumaRoutes {
    fn ruma<T: Metadata, H, X>(self, handler: H) -> Self
    where
        H: Handler<X, AppState>,
        X: 'static;
}

impl RumaRoutes for Router<AppState> {
    fn ruma<T: Metadata, H, X>(mut self, handler: H) -> Self
    where
        H: Handler<X, AppState>,
        X: 'static,
    {
        let filter = MethodFilter::try_from(T::METHOD).expect("endpoint methods are standard");
        for path in T::PATH_BUILDER.all_paths() {
            self = self.route(path, on(filter, handler.clone()));
        }
        self
    }
}

async fn fallback(method: Method) -> Response {
    metrics::counter!("trellis_http_requests_total", "method" => method.to_string(), "route" => "unmatched", "status" => "404")
        .increment(1);
    unrecognized().into_response()
}

async fn metrics() -> String {
    trellis_core::telemetry::metrics_handle().render()
}

/// Every response carries the CORS headers browsers need, and any `OPTIONS` request (a
/// preflight or not) is answered at once, like Synapse does.
async fn cors(req: Request, next: Next) -> Response {
    let mut response = if req.method() == Method::OPTIONS {
        (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response()
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization, Date"),
    );
    response
}

struct HeaderExtract<'a>(&'a HeaderMap);

impl Extractor for HeaderExtract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A span per request (continuing a caller's W3C trace if it sent one) and Prometheus
/// request counts and latency per route.
async fn observe(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.method = %method,
        http.route = %route,
        http.status = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtract(req.headers())));
    let _ = span.set_parent(parent);
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.status", status);
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("trellis_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("trellis_http_request_duration_seconds", "method" => method.to_string(), "route" => route)
        .record(elapsed);
    response
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    let body = serde_json::json!({"errcode": "M_UNKNOWN", "error": "Internal server error"});
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}
