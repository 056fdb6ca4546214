//! The `SyncService` trait over [`SyncWorker`].

use trellis_core::Result;
use trellis_proto::sync::*;

use crate::SyncWorker;

#[async_trait::async_trait]
impl SyncService for SyncWorker {
    async fn sync(&self, req: SyncRequest) -> Result<SyncResponse> {
        self.long_poll(req).await
    }
    async fn create_filter(&self, req: CreateFilterRequest) -> Result<CreateFilterResponse> {
        self.create_filter(req).await
    }
    async fn get_filter(&self, req: GetFilterRequest) -> Result<GetFilterResponse> {
        self.get_filter(req).await
    }
    async fn set_typing(&self, req: SetTypingRequest) -> Result<Ack> {
        self.set_typing(req).await
    }
    async fn post_receipt(&self, req: PostReceiptRequest) -> Result<Ack> {
        self.post_receipt(req).await
    }
    async fn set_read_markers(&self, req: ReadMarkersRequest) -> Result<Ack> {
        self.set_read_markers(req).await
    }
    async fn get_account_data(&self, req: GetAccountDataRequest) -> Result<AccountDataResponse> {
        self.get_account_data(req).await
    }
    async fn set_account_data(&self, req: SetAccountDataRequest) -> Result<Ack> {
        self.set_account_data(req).await
    }
    async fn update_tag(&self, req: UpdateTagRequest) -> Result<Ack> {
        self.update_tag(req).await
    }
    async fn get_presence(&self, req: GetPresenceRequest) -> Result<PresenceResponse> {
        self.get_presence(req).await
    }
    async fn set_presence(&self, req: SetPresenceRequest) -> Result<Ack> {
        self.set_presence(req).await
    }
    async fn initial_sync(&self, req: InitialSyncRequest) -> Result<SyncResponse> {
        self.legacy_initial_sync(req).await
    }
    async fn events(&self, req: EventsRequest) -> Result<SyncResponse> {
        self.legacy_events(req).await
    }
    async fn room_initial_sync(&self, req: RoomInitialSyncRequest) -> Result<SyncResponse> {
        self.legacy_room_initial_sync(req).await
    }
    async fn get_push_rules(&self, req: GetPushRulesRequest) -> Result<PushRules> {
        self.get_push_rules_op(req).await
    }
    async fn get_push_rule(&self, req: PushRuleRequest) -> Result<PushRule> {
        self.get_push_rule_op(req).await
    }
    async fn set_push_rule(&self, req: SetPushRuleRequest) -> Result<Ack> {
        self.set_push_rule_op(req).await
    }
    async fn delete_push_rule(&self, req: PushRuleRequest) -> Result<Ack> {
        self.delete_push_rule_op(req).await
    }
    async fn set_push_rule_enabled(&self, req: SetPushRuleEnabledRequest) -> Result<Ack> {
        self.set_push_rule_enabled_op(req).await
    }
    async fn set_push_rule_actions(&self, req: SetPushRuleActionsRequest) -> Result<Ack> {
        self.set_push_rule_actions_op(req).await
    }
    async fn get_pushers(&self, req: GetPushersRequest) -> Result<PusherList> {
        self.get_pushers_op(req).await
    }
    async fn set_pusher(&self, req: SetPusherRequest) -> Result<Ack> {
        self.set_pusher_op(req).await
    }
    async fn delete_device_pushers(&self, req: DeleteDevicePushersRequest) -> Result<Ack> {
        self.delete_device_pushers_op(req).await
    }
    async fn notifications(&self, req: NotificationsRequest) -> Result<NotificationPage> {
        self.list_notifications(req).await
    }
    async fn send_to_device(&self, req: SendToDeviceRequest) -> Result<Ack> {
        self.send_to_device(req).await
    }
    async fn transfer_room_settings(&self, req: TransferRoomSettingsRequest) -> Result<Ack> {
        self.transfer_room_settings(req).await
    }
    async fn sliding_sync(&self, req: SlidingSyncRequest) -> Result<SlidingSyncResponse> {
        self.sliding_sync(req).await
    }
}
