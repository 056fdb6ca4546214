//! `Probe`: a sync service for contract tests. Its `sync` does what the request's `user_id`
//! asks (see [`Probe::sync`]) and remembers the trace each call ran in; two other methods fail
//! in set ways, and the rest are not part of these tests.

#![allow(dead_code)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use opentelemetry::trace::{TraceContextExt, TraceId};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use trellis_core::{
    Error, ErrorCode, Result,
    shutdown::{Shutdown, ShutdownTrigger},
};
use trellis_proto::sync::*;

pub struct Probe {
    /// The trace each `sync` call ran in, in order.
    pub traces: Mutex<Vec<TraceId>>,
    /// `hold` calls running now (one that is dropped stops counting).
    pub holding: Arc<AtomicUsize>,
    /// What ends `hold` calls, as shutdown ends a real worker's long-polls.
    pub shutdown: Shutdown,
    /// What ends `stubborn` calls, which shutdown does not.
    release: (ShutdownTrigger, Shutdown),
}

impl Probe {
    pub fn new(shutdown: Shutdown) -> Arc<Probe> {
        let (trigger, released) = trellis_core::shutdown::channel();
        Arc::new(Probe { traces: Mutex::default(), holding: Arc::default(), shutdown, release: (trigger, released) })
    }

    /// Lets every `stubborn` call answer.
    pub fn release(&self) {
        self.release.0.trigger();
    }
}

/// Counts a running `hold` call until it ends or is dropped.
struct Holding(Arc<AtomicUsize>);

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn current_trace() -> TraceId {
    tracing::Span::current().context().span().span_context().trace_id()
}

#[async_trait::async_trait]
impl SyncService for Probe {
    /// `echo:X` answers `X` after `timeout_ms`; `forbidden` fails with `M_FORBIDDEN`; `panic`
    /// panics; `hold` waits for shutdown, then answers `held`; `stubborn` waits for
    /// [`Probe::release`], then answers `released`.
    async fn sync(&self, req: SyncRequest) -> Result<SyncResponse> {
        self.traces.lock().unwrap().push(current_trace());
        match req.user_id.as_str() {
            "forbidden" => Err(Error::new(ErrorCode::Forbidden, "not you")),
            "panic" => panic!("the probe was asked to panic"),
            "hold" => {
                self.holding.fetch_add(1, Ordering::SeqCst);
                let _holding = Holding(self.holding.clone());
                self.shutdown.wait().await;
                Ok(SyncResponse { body_json: "held".into() })
            }
            "stubborn" => {
                self.holding.fetch_add(1, Ordering::SeqCst);
                let _holding = Holding(self.holding.clone());
                self.release.1.wait().await;
                Ok(SyncResponse { body_json: "released".into() })
            }
            other => {
                tokio::time::sleep(Duration::from_millis(req.timeout_ms)).await;
                Ok(SyncResponse { body_json: other.strip_prefix("echo:").unwrap_or("{}").to_owned() })
            }
        }
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
    async fn get_push_rules(&self, _: GetPushRulesRequest) -> Result<PushRules> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn get_push_rule(&self, _: PushRuleRequest) -> Result<PushRule> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn set_push_rule(&self, _: SetPushRuleRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn delete_push_rule(&self, _: PushRuleRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn set_push_rule_enabled(&self, _: SetPushRuleEnabledRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn set_push_rule_actions(&self, _: SetPushRuleActionsRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn get_pushers(&self, _: GetPushersRequest) -> Result<PusherList> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn set_pusher(&self, _: SetPusherRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn delete_device_pushers(&self, _: DeleteDevicePushersRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn notifications(&self, _: NotificationsRequest) -> Result<NotificationPage> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn send_to_device(&self, _: SendToDeviceRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn transfer_room_settings(&self, _: TransferRoomSettingsRequest) -> Result<Ack> {
        Err(Error::unrecognized("not in this test"))
    }
    async fn sliding_sync(&self, _: SlidingSyncRequest) -> Result<SlidingSyncResponse> {
        Err(Error::unrecognized("not in this test"))
    }
}
