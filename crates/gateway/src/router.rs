//! The router: endpoint routes from `client/`, registered on every historical path of their
//! ruma metadata, behind the edge (`edge.rs`: CORS, `OPTIONS`, first-generation paths); the
//! `M_UNRECOGNIZED` 404/405 fallbacks and panics as `M_UNKNOWN`; per-route tracing spans and
//! Prometheus metrics (served on the operations port, never here: see `metrics.listen`).

use std::{
    collections::HashSet,
    sync::{Arc, LazyLock},
    time::Instant,
};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    handler::Handler,
    http::{HeaderMap, Method},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use opentelemetry::propagation::Extractor;
use ruma::api::{IncomingRequest, Metadata, path_builder::PathBuilder};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    AppState, GatewaySettings, Services, client,
    error::{ApiResult, unrecognized},
    extract::{Auth, Ruma},
    response::Reply,
};

/// The complete HTTP application.
pub fn router(services: Services, settings: GatewaySettings) -> Router {
    let app = routes(services, settings);
    // The edge sits before routing: it rewrites first-generation paths.
    Router::new().fallback_service(tower::ServiceBuilder::new().layer(crate::edge::EdgeLayer).service(app))
}

fn routes(services: Services, settings: GatewaySettings) -> Router {
    let tokens = (!settings.token_cache.is_zero())
        .then(|| Arc::new(crate::tokens::TokenCache::new(settings.token_cache, 200_000)));
    let state = AppState { services: Arc::new(services), settings: Arc::new(settings), tokens };
    let routes = client::routes()
        .merge(crate::admin::routes())
        .merge(crate::oauth::routes())
        .merge(crate::sso::routes())
        .merge(crate::sso_cas::routes())
        .route_layer(middleware::from_fn(crate::input::check_path_ids))
        .route_layer(middleware::from_fn(observe));
    guarded(routes).with_state(state)
}

/// The fallbacks for unknown paths and methods, and a panic anywhere inside becoming a logged
/// `M_UNKNOWN` 500 for that request alone.
fn guarded<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .method_not_allowed_fallback(|| async {
            crate::error::ApiError(trellis_core::Error::unrecognized("Unrecognized request").with_status(405))
        })
        .fallback(fallback)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
}

/// Registration of endpoint handlers on every historical path of their ruma metadata.
///
/// A handler is `async fn <endpoint>_route(s: AppState, req: Ruma<Request>) ->
/// ApiResult<Response>`: the endpoint's request type in (authenticated as its metadata
/// says), its response type out (or [`Rendered`](crate::response::Rendered) JSON standing
/// for it); the method and paths come from the request type's metadata.
pub(crate) trait RumaRoutes: Sized {
    /// On the endpoint's own paths (r0, v3, v1, unstable: all its metadata lists).
    fn ruma<T, A, F, Fut, O>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        A: Auth,
        F: Fn(AppState, Ruma<T, A>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ApiResult<O>> + Send + 'static,
        O: Reply<T::OutgoingResponse> + 'static,
    {
        self.ruma_on(paths_of::<T>(), handler)
    }

    /// On `paths` (the endpoint's own and any its metadata does not list; the caller says why).
    fn ruma_on<T, A, F, Fut, O>(self, paths: Vec<String>, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        A: Auth,
        F: Fn(AppState, Ruma<T, A>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ApiResult<O>> + Send + 'static,
        O: Reply<T::OutgoingResponse> + 'static;

    /// A plain axum handler on endpoint `T`'s paths, for the endpoints whose body their
    /// service still reads as JSON (keys, push rule writes, `pushers/set`: their services
    /// decide the errcodes until their contracts are typed), whose query is read as Synapse
    /// reads it (`/sync`), or that stream (media).
    fn json_endpoint<T: Metadata, H: Handler<X, AppState>, X: 'static>(self, handler: H) -> Self {
        self.json_endpoint_on::<T, H, X>(paths_of::<T>(), handler)
    }

    /// [`json_endpoint`](Self::json_endpoint) on `paths`.
    fn json_endpoint_on<T: Metadata, H: Handler<X, AppState>, X: 'static>(self, paths: Vec<String>, handler: H)
    -> Self;
}

impl RumaRoutes for Router<AppState> {
    fn ruma_on<T, A, F, Fut, O>(mut self, paths: Vec<String>, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        A: Auth,
        F: Fn(AppState, Ruma<T, A>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ApiResult<O>> + Send + 'static,
        O: Reply<T::OutgoingResponse> + 'static,
    {
        let filter = MethodFilter::try_from(T::METHOD).expect("endpoint methods are standard");
        let route = move |State(s): State<AppState>, req: Ruma<T, A>| {
            let answer = handler(s, req);
            async move {
                match answer.await {
                    Ok(reply) => reply.into_answer(),
                    Err(e) => e.into_response(),
                }
            }
        };
        for path in paths {
            self = self.route(&path, on(filter, route.clone()));
        }
        self
    }

    fn json_endpoint_on<T: Metadata, H: Handler<X, AppState>, X: 'static>(
        mut self,
        paths: Vec<String>,
        handler: H,
    ) -> Self {
        let filter = MethodFilter::try_from(T::METHOD).expect("endpoint methods are standard");
        for path in paths {
            self = self.route(&path, on(filter, handler.clone()));
        }
        self
    }
}

/// The paths of endpoint `T`'s metadata.
pub(crate) fn paths_of<T: Metadata>() -> Vec<String> {
    T::PATH_BUILDER.all_paths().map(str::to_owned).collect()
}

/// `paths`, and each of them under `{base}v3/` also under the older `versions` of `base`
/// that ruma's metadata does not list (clients still use them, and Synapse serves them).
pub(crate) fn also_under(mut paths: Vec<String>, base: &str, versions: &[&str]) -> Vec<String> {
    let v3 = format!("{base}v3/");
    let rests: Vec<String> = paths.iter().filter_map(|p| p.strip_prefix(&v3)).map(str::to_owned).collect();
    for rest in rests {
        for version in versions {
            let path = format!("{base}{version}/{rest}");
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths
}

async fn fallback(method: Method) -> Response {
    metrics::counter!("trellis_http_requests_total", "method" => method.to_string(), "route" => "unmatched", "status" => "404")
        .increment(1);
    unrecognized().into_response()
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
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| route_label(m.as_str()));
    let method = method_label(req.method());
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.method = method,
        http.route = route,
        http.status = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    // A caller's W3C trace context, when it sent one.
    if req.headers().contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtract(req.headers())));
        let _ = span.set_parent(parent);
    }
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.status", status);
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("trellis_http_requests_total", "method" => method, "route" => route, "status" => status_label(status))
        .increment(1);
    metrics::histogram!("trellis_http_request_duration_seconds", "method" => method, "route" => route).record(elapsed);
    response
}

/// A matched route's pattern as a label value. Patterns are the router's own (a fixed set),
/// so each is leaked once rather than copied on every request.
fn route_label(route: &str) -> &'static str {
    static SEEN: LazyLock<parking_lot::RwLock<HashSet<&'static str>>> = LazyLock::new(Default::default);
    if let Some(known) = SEEN.read().get(route) {
        return known;
    }
    let mut seen = SEEN.write();
    if let Some(known) = seen.get(route) {
        return known;
    }
    let leaked: &'static str = Box::leak(route.into());
    seen.insert(leaked);
    leaked
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

fn status_label(status: u16) -> &'static str {
    static CODES: LazyLock<Vec<String>> = LazyLock::new(|| (0..1000).map(|c: u16| c.to_string()).collect());
    CODES.get(usize::from(status)).map_or("other", String::as_str)
}

/// A panic is an internal error: logged (with its text) and answered `M_UNKNOWN` by the one
/// error mapping.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let text = crate::input::panic_text(&*panic).unwrap_or("?");
    crate::error::ApiError(trellis_core::Error::internal(format!("handler panicked: {text}"))).into_response()
}

#[cfg(test)]
mod tests {
    use axum::{
        body::Body,
        http::{Request, StatusCode},
        routing::get,
    };
    use tower::ServiceExt;

    use super::*;

    async fn call(app: &Router, path: &str) -> (StatusCode, serde_json::Value) {
        let response = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    async fn boom() -> &'static str {
        let items: Vec<&str> = Vec::new();
        items[std::hint::black_box(0)]
    }

    #[tokio::test]
    async fn a_panic_is_a_500_for_that_request_only() {
        let app = guarded(
            Router::new().route("/boom", get(boom)).route("/fine", get(|| async { axum::Json(serde_json::json!({})) })),
        );
        let (status, body) = call(&app, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["errcode"], "M_UNKNOWN");
        assert!(!body.to_string().contains("index out of bounds"), "the panic's text stays in the log: {body}");
        assert_eq!(call(&app, "/fine").await.0, StatusCode::OK, "the next request is served");
        assert_eq!(call(&app, "/nowhere").await.1["errcode"], "M_UNRECOGNIZED");
    }
}
