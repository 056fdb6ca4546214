//! W3C trace-context propagation through gRPC metadata, so one trace spans the gateway and
//! every service it calls.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Inject<'a>(&'a mut MetadataMap);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value)) {
            self.0.insert(k, v);
        }
    }
}

struct Extract<'a>(&'a MetadataMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

impl Injector for TraceMap<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for TraceMap<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// A trace context carried in a message's string map rather than in request metadata (calls
/// that share one stream share its metadata too).
struct TraceMap<'a>(&'a mut HashMap<String, String>);

/// The current span's context as a message field.
pub fn current_map() -> HashMap<String, String> {
    let mut map = HashMap::new();
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut TraceMap(&mut map)));
    map
}

/// Makes `span` a child of the trace carried in a message field, if any.
pub fn adopt_map(span: &tracing::Span, mut map: HashMap<String, String>) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&TraceMap(&mut map)));
    let _ = span.set_parent(cx);
}

/// Writes the current span's context into outgoing request metadata.
pub fn inject(metadata: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut Inject(metadata)));
}

/// Makes `span` a child of the trace carried by incoming request metadata, if any.
pub fn adopt(span: &tracing::Span, metadata: &MetadataMap) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(metadata)));
    let _ = span.set_parent(cx);
}
