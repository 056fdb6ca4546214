//! Without an OTLP endpoint nothing is traced: spans still scope logs, but carry no
//! OpenTelemetry context (and cost no span building per request).

use opentelemetry::trace::{TraceContextExt, TraceId};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use trellis_core::config::TelemetryConfig;

#[test]
fn spans_carry_no_trace_without_a_collector() {
    let guard = trellis_core::telemetry::init(&TelemetryConfig::default(), "no-export-test").unwrap();
    let span = tracing::info_span!("request");
    assert_eq!(span.context().span().span_context().trace_id(), TraceId::INVALID);
    // Logging inside the span still works with no tracing layer behind it.
    span.in_scope(|| tracing::info!("inside"));
    guard.flush();
}
