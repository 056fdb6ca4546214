//! The sync service contract, and [`SyncPool`]: one handle over several sync workers.

use std::sync::Arc;

use trellis_core::shutdown::Shutdown;

pub use crate::pb::sync::*;

/// One sync handle over the sync workers alive now ([`crate::sync_pool`]); it implements
/// [`SyncService`] from the list below.
pub type SyncPool = crate::sync_pool::Pool<dyn SyncService>;
/// A sync worker as the pool knows it.
pub type PoolWorker = crate::sync_pool::Worker<dyn SyncService>;

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
        /// The user's effective push rules, of every kind or of one.
        fn get_push_rules(GetPushRulesRequest) -> PushRules;
        fn get_push_rule(PushRuleRequest) -> PushRule;
        /// Adds or replaces a user rule, placed before or after another.
        fn set_push_rule(SetPushRuleRequest) -> Ack;
        fn delete_push_rule(PushRuleRequest) -> Ack;
        fn set_push_rule_enabled(SetPushRuleEnabledRequest) -> Ack;
        fn set_push_rule_actions(SetPushRuleActionsRequest) -> Ack;
        fn get_pushers(GetPushersRequest) -> PusherList;
        /// Sets a pusher, or deletes it when the request has no kind.
        fn set_pusher(SetPusherRequest) -> Ack;
        fn delete_device_pushers(DeleteDevicePushersRequest) -> Ack;
        fn notifications(NotificationsRequest) -> NotificationPage;
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
            let inner = self.inner.clone();
            let answer = move |req| {
                let inner = inner.clone();
                async move { inner.sync(req).await }
            };
            let answers = crate::sync_calls::serve(answer, request.into_inner(), self.shutdown.clone());
            Ok(tonic::Response::new(answers))
        }
    };
    pool SyncPool;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_worker_is_unavailable_not_a_panic() {
        let empty = SyncPool::new(Vec::new(), trellis_core::config::SyncBalance::User);
        let err = empty.sync(SyncRequest::default()).await.unwrap_err();
        assert!(crate::status::is_unavailable(&err), "{err:?}");
    }
}
