//! One trace spans a gRPC hop: the server's span continues the caller's trace, and a Matrix
//! error comes back with its errcode and status.

use std::sync::{Arc, Mutex};

use opentelemetry::trace::{TraceContextExt, TraceId};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::sync::*;

/// A sync service that only remembers the trace it was called in.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<TraceId>>,
}

fn current_trace() -> TraceId {
    tracing::Span::current().context().span().span_context().trace_id()
}

#[async_trait::async_trait]
impl SyncService for Recorder {
    async fn sync(&self, _: SyncRequest) -> Result<SyncResponse> {
        self.seen.lock().unwrap().push(current_trace());
        Ok(SyncResponse { body_json: "{}".into() })
    }
    async fn create_filter(&self, _: CreateFilterRequest) -> Result<CreateFilterResponse> {
        Err(Error::new(ErrorCode::LimitExceeded, "slow down").with_field("retry_after_ms", 1500))
    }
    async fn get_filter(&self, _: GetFilterRequest) -> Result<GetFilterResponse> {
        Err(Error::internal("secret internal detail"))
    }
    async fn set_typing(&self, _: SetTypingRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn post_receipt(&self, _: PostReceiptRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn set_read_markers(&self, _: ReadMarkersRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn get_account_data(&self, _: GetAccountDataRequest) -> Result<AccountDataResponse> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn set_account_data(&self, _: SetAccountDataRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn update_tag(&self, _: UpdateTagRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn get_presence(&self, _: GetPresenceRequest) -> Result<PresenceResponse> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn set_presence(&self, _: SetPresenceRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn initial_sync(&self, _: InitialSyncRequest) -> Result<SyncResponse> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn events(&self, _: EventsRequest) -> Result<SyncResponse> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn room_initial_sync(&self, _: RoomInitialSyncRequest) -> Result<SyncResponse> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn push_rules(&self, _: PushRulesRequest) -> Result<JsonResponse> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn pushers(&self, _: PushersRequest) -> Result<JsonResponse> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn notifications(&self, _: NotificationsRequest) -> Result<JsonResponse> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn send_to_device(&self, _: SendToDeviceRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_context_and_errcodes_survive_the_hop() {
    // Traces exist only where they are exported: a listener stands in for the collector.
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", collector.local_addr().unwrap());
    // It hangs up on every export, so shutting the exporter down does not wait for one.
    tokio::spawn(async move {
        while let Ok((socket, _)) = collector.accept().await {
            drop(socket);
        }
    });
    let cfg = trellis_core::config::TelemetryConfig { otlp_endpoint: Some(endpoint), ..Default::default() };
    let _guard = trellis_core::telemetry::init(&cfg, "trace-test").unwrap();
    let recorder = Arc::new(Recorder::default());
    let routes = tonic::service::Routes::new(SyncGrpcServer::new(recorder.clone()).into_service());
    let url = trellis_proto::server::spawn_on_free_port(routes).await;
    let client = SyncGrpcClient::connect(&url).unwrap();

    let span = tracing::info_span!("caller");
    let caller_trace = span.context().span().span_context().trace_id();
    assert_ne!(caller_trace, TraceId::INVALID, "the caller has a trace");
    client.sync(SyncRequest::default()).instrument(span).await.unwrap();
    // A second, unrelated call gets a trace of its own.
    client.sync(SyncRequest::default()).instrument(tracing::info_span!("other")).await.unwrap();
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen[0], caller_trace, "the server continued the caller's trace");
    assert_ne!(seen[1], caller_trace);

    let err = client.create_filter(CreateFilterRequest::default()).await.unwrap_err();
    assert_eq!((err.code(), err.status()), (ErrorCode::LimitExceeded, 429));
    assert_eq!(err.client_body()["retry_after_ms"], 1500);
    let err = client.get_filter(GetFilterRequest::default()).await.unwrap_err();
    assert!(err.is_internal());
    assert!(!err.client_body().to_string().contains("secret"), "internal text stays on the server");
}
