//! Telemetry set-up: `tracing` logs (text or JSON), OpenTelemetry spans with W3C
//! trace-context propagation when an OTLP endpoint is configured (exported there), and the
//! Prometheus recorder behind `/metrics`.
//!
//! The tracing subscriber and the metrics recorder are process-wide by nature; both are
//! installed at most once, so several in-process servers (tests) can share them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogFormat, TelemetryConfig};

/// Latency buckets (seconds) shared by every request-duration histogram.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// What becomes an OpenTelemetry span.
const SPAN_FILTER: &str = "info,tokio_postgres=warn,h2=warn,tower=warn,hyper=warn,ruma_common=warn,ruma_state_res=warn";

/// Keeps the span exporter alive; flushes it when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports the spans finished so far (before a short-lived command exits, or in tests).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs logging and tracing for this process. Call once, from inside a multi-thread
/// Tokio runtime (the OTLP batch exporter needs one). Later calls are no-ops.
pub fn init(cfg: &TelemetryConfig, service_name: &str) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    // Spans become OpenTelemetry spans only when they are exported: without a collector the
    // layer would build, time and drop a span for every request (about a tenth of the
    // server's CPU under sync load) for nobody to read.
    let provider = match &cfg.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter =
                opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint.clone()).build()?;
            let resource = Resource::builder().with_service_name(service_name.to_owned()).build();
            Some(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build())
        }
        None => None,
    };
    // Per span, the layer records only what a trace viewer needs: no busy/idle timings (a
    // clock read and a lock on every poll of an instrumented future), no thread attributes,
    // and no OpenTelemetry context attached on entry (trace context is read from the span
    // itself where it crosses a hop).
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("trellis"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_context_activation(false)
    });

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match cfg.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_target(true).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_current_span(true).boxed(),
    };
    // Logs follow the configured filter; exported spans keep `info` whatever the log level,
    // so traces stay whole when logs are quiet. Library spans made per item of
    // work (ruma's push-rule matching runs once per event and member) are left out: recorded,
    // they cost more than the work they describe.
    let spans = EnvFilter::new(SPAN_FILTER);
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel.map(|otel| otel.with_filter(spans)))
        .try_init()
        .is_ok();
    let provider = match provider {
        // Another subscriber came first (tests): this provider would never see a span.
        Some(unused) if !installed => {
            let _ = unused.shutdown();
            None
        }
        provider => provider,
    };
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(TelemetryGuard { provider })
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder =
                PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).expect("non-empty bucket list").build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by a test harness); then our
            // handle renders nothing, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
