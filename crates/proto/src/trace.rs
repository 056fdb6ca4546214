//! W3C trace-context propagation through gRPC metadata (or, for calls sharing a stream, a
//! message field), so one trace spans the gateway and every service it calls.

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

/// The current span's context as a message field, for calls that share one stream (and so
/// its metadata).
pub fn current_map() -> HashMap<String, String> {
    let mut map = HashMap::new();
    inject_into(&mut map);
    map
}

/// Makes `span` a child of the trace carried in a message field, if any.
pub fn adopt_map(span: &tracing::Span, map: &HashMap<String, String>) {
    adopt_from(span, map);
}

fn inject_into(carrier: &mut dyn Injector) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, carrier));
}

fn adopt_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    let _ = span.set_parent(cx);
}

/// Writes the current span's context into outgoing request metadata.
pub fn inject(metadata: &mut MetadataMap) {
    inject_into(&mut Inject(metadata));
}

/// Makes `span` a child of the trace carried by incoming request metadata, if any.
pub fn adopt(span: &tracing::Span, metadata: &MetadataMap) {
    adopt_from(span, &Extract(metadata));
}
