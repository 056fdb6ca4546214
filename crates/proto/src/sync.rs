//! The sync service contract, and [`SyncPool`]: one handle over several sync workers.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use trellis_core::{config::SyncBalance, shutdown::Shutdown};

pub use crate::pb::sync::*;

service! {
    /// `/sync` long-polls and stored filters.
    pub trait SyncService as "sync" {
        /// Answers at once if anything is new since `since`, else when something is, else at
        /// the timeout with an empty but valid body.
        fn sync(SyncRequest) -> SyncResponse => via sync_multiplexed;
        fn create_filter(CreateFilterRequest) -> CreateFilterResponse;
        fn get_filter(GetFilterRequest) -> GetFilterResponse;
        fn set_typing(SetTypingRequest) -> Ack;
        fn post_receipt(PostReceiptRequest) -> Ack;
        fn set_read_markers(ReadMarkersRequest) -> Ack;
        fn get_account_data(GetAccountDataRequest) -> AccountDataResponse;
        fn set_account_data(SetAccountDataRequest) -> Ack;
        fn update_tag(UpdateTagRequest) -> Ack;
        fn get_presence(GetPresenceRequest) -> PresenceResponse;
        fn set_presence(SetPresenceRequest) -> Ack;
        /// `GET /initialSync` (pre-r0).
        fn initial_sync(InitialSyncRequest) -> SyncResponse;
        /// `GET /events` (pre-r0 long-poll).
        fn events(EventsRequest) -> SyncResponse;
        fn room_initial_sync(RoomInitialSyncRequest) -> SyncResponse;
        fn push_rules(PushRulesRequest) -> JsonResponse;
        fn pushers(PushersRequest) -> JsonResponse;
        fn delete_device_pushers(DeleteDevicePushersRequest) -> Ack;
        fn notifications(NotificationsRequest) -> JsonResponse;
        /// Stores send-to-device messages and wakes the recipients' long-polls.
        fn send_to_device(SendToDeviceRequest) -> Ack;
        /// After an upgrade: the old room's push rules, tags and direct-chat entries of its
        /// local members are copied to the new room.
        fn transfer_room_settings(TransferRoomSettingsRequest) -> Ack;
        /// Simplified Sliding Sync (MSC4186): one request of a connection.
        fn sliding_sync(SlidingSyncRequest) -> SlidingSyncResponse;
    }
    client SyncGrpcClient = sync_client::SyncClient<tonic::transport::Channel>,
        with calls: Arc<crate::sync_calls::Multiplexer>;
    server SyncGrpcServer = sync_server::{SyncServer, Sync}, with shutdown: Option<Shutdown> {
        type SyncCallsStream = crate::sync_calls::Answers;

        async fn sync_calls(
            &self,
            request: tonic::Request<tonic::Streaming<SyncCall>>,
        ) -> Result<tonic::Response<Self::SyncCallsStream>, tonic::Status> {
            let answers = crate::sync_calls::serve(self.inner.clone(), request.into_inner(), self.shutdown.clone());
            Ok(tonic::Response::new(answers))
        }
    };
}

impl SyncGrpcClient {
    /// Incremental long-polls share one stream to the worker (see [`crate::sync_calls`]).
    /// Initial and full-state syncs can be megabytes: each takes a call of its own, so that
    /// it does not hold up the small answers behind it. So does everything for a worker of an
    /// older release that has no call streams.
    async fn sync_multiplexed(&self, req: SyncRequest) -> trellis_core::Result<SyncResponse> {
        if req.since.is_none() || req.full_state || self.calls.unsupported() {
            return client_call!(self, sync, req);
        }
        let unary = req.clone();
        match self.calls.call(&self.inner, req).await {
            Err(_) if self.calls.unsupported() => client_call!(self, sync, unary),
            answer => answer,
        }
    }
}

impl SyncGrpcServer {
    /// Ends the worker's multiplexed streams once `shutdown` has begun and their calls are
    /// answered, so that the gRPC server's graceful stop is not held open by them.
    pub fn until(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }
}

/// Spreads calls over several sync workers. Any worker can answer any call: tokens carry the
/// whole position and PostgreSQL holds the truth, so the choice only affects warm caches. A
/// worker that cannot be reached is skipped in favour of the next one.
pub struct SyncPool {
    workers: Vec<Arc<dyn SyncService>>,
    balance: SyncBalance,
    next: AtomicUsize,
}

impl SyncPool {
    pub fn new(workers: Vec<Arc<dyn SyncService>>, balance: SyncBalance) -> SyncPool {
        assert!(!workers.is_empty(), "a sync pool needs at least one worker");
        SyncPool { workers, balance, next: AtomicUsize::new(0) }
    }

    fn first_choice(&self, user_id: &str) -> usize {
        match self.balance {
            SyncBalance::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed),
            SyncBalance::User => {
                // FNV-1a: stable across processes, so every gateway picks the same worker.
                let mut h: u64 = 0xcbf29ce484222325;
                for b in user_id.bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
                }
                h as usize
            }
        }
    }

    async fn call<T, F, Fut>(&self, user_id: &str, f: F) -> trellis_core::Result<T>
    where
        F: Fn(Arc<dyn SyncService>) -> Fut,
        Fut: std::future::Future<Output = trellis_core::Result<T>>,
    {
        let start = self.first_choice(user_id);
        let n = self.workers.len();
        let mut last = None;
        for i in 0..n {
            let worker = self.workers[(start + i) % n].clone();
            match f(worker).await {
                // Only an unreachable or failing worker is retried elsewhere; a Matrix error is
                // an answer.
                Err(e) if (e.is_internal() || crate::status::is_unavailable(&e)) && i + 1 < n => {
                    tracing::warn!(error = ?e, "sync worker failed; trying the next one");
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| trellis_core::Error::internal("no sync worker")))
    }
}

/// Every call goes to the worker chosen for the request's user.
macro_rules! pooled {
    ($($method:ident($Req:ty) -> $Resp:ty;)*) => {
        #[async_trait::async_trait]
        impl SyncService for SyncPool {
            $(
                async fn $method(&self, req: $Req) -> trellis_core::Result<$Resp> {
                    let user = req.user_id.clone();
                    self.call(&user, |w| {
                        let req = req.clone();
                        async move { w.$method(req).await }
                    })
                    .await
                }
            )*
        }
    };
}

pooled! {
    sync(SyncRequest) -> SyncResponse;
    create_filter(CreateFilterRequest) -> CreateFilterResponse;
    get_filter(GetFilterRequest) -> GetFilterResponse;
    set_typing(SetTypingRequest) -> Ack;
    post_receipt(PostReceiptRequest) -> Ack;
    set_read_markers(ReadMarkersRequest) -> Ack;
    get_account_data(GetAccountDataRequest) -> AccountDataResponse;
    set_account_data(SetAccountDataRequest) -> Ack;
    update_tag(UpdateTagRequest) -> Ack;
    get_presence(GetPresenceRequest) -> PresenceResponse;
    set_presence(SetPresenceRequest) -> Ack;
    initial_sync(InitialSyncRequest) -> SyncResponse;
    events(EventsRequest) -> SyncResponse;
    room_initial_sync(RoomInitialSyncRequest) -> SyncResponse;
    push_rules(PushRulesRequest) -> JsonResponse;
    pushers(PushersRequest) -> JsonResponse;
    delete_device_pushers(DeleteDevicePushersRequest) -> Ack;
    notifications(NotificationsRequest) -> JsonResponse;
    send_to_device(SendToDeviceRequest) -> Ack;
    transfer_room_settings(TransferRoomSettingsRequest) -> Ack;
    sliding_sync(SlidingSyncRequest) -> SlidingSyncResponse;
}
