//! The `RoomsService` trait over [`Rooms`]: each call goes to the module that owns it.

use std::sync::Arc;

use trellis_core::Result;
use trellis_proto::rooms::*;

use crate::Rooms;

/// The service as the rest of Trellis sees it (the trait needs an owned handle so profile
/// propagation can continue in the background).
#[derive(Clone)]
pub struct RoomsHandle(pub Arc<Rooms>);

#[async_trait::async_trait]
impl RoomsService for RoomsHandle {
    async fn create_room(&self, req: CreateRoomRequest) -> Result<CreateRoomResponse> {
        self.0.create_room(req).await
    }
    async fn send_event(&self, req: SendEventRequest) -> Result<SendEventResponse> {
        self.0.send_event(req).await
    }
    async fn change_membership(&self, req: MembershipRequest) -> Result<MembershipResponse> {
        self.0.change_membership(req).await
    }
    async fn invite_threepid(&self, req: InviteThreepidRequest) -> Result<Empty> {
        self.0.invite_threepid(req).await
    }
    async fn threepid_bound(&self, req: ThreepidBoundRequest) -> Result<Empty> {
        self.0.threepid_bound(req).await
    }
    async fn get_state_event(&self, req: GetStateEventRequest) -> Result<StateEventResponse> {
        self.0.get_state_event(req).await
    }
    async fn get_state(&self, req: GetStateRequest) -> Result<EventList> {
        self.0.get_state(req).await
    }
    async fn get_messages(&self, req: GetMessagesRequest) -> Result<GetMessagesResponse> {
        self.0.get_messages(req).await
    }
    async fn resolve_alias(&self, req: ResolveAliasRequest) -> Result<ResolveAliasResponse> {
        self.0.resolve_alias(req).await
    }
    async fn joined_rooms(&self, req: JoinedRoomsRequest) -> Result<JoinedRoomsResponse> {
        self.0.joined_rooms(req).await
    }
    async fn profile_changed(&self, req: ProfileChangedRequest) -> Result<ProfileChangedResponse> {
        self.0.profile_changed(req).await
    }
    async fn forget(&self, req: ForgetRequest) -> Result<Empty> {
        self.0.forget(req).await
    }
    async fn get_event(&self, req: GetEventRequest) -> Result<EventResponse> {
        self.0.get_event(req).await
    }
    async fn get_context(&self, req: GetContextRequest) -> Result<GetContextResponse> {
        self.0.get_context(req).await
    }
    async fn get_members(&self, req: GetMembersRequest) -> Result<EventList> {
        self.0.get_members(req).await
    }
    async fn joined_members(&self, req: JoinedMembersRequest) -> Result<JoinedMembersResponse> {
        self.0.joined_members(req).await
    }
    async fn redact(&self, req: RedactRequest) -> Result<SendEventResponse> {
        self.0.redact(req).await
    }
    async fn get_relations(&self, req: GetRelationsRequest) -> Result<GetRelationsResponse> {
        self.0.get_relations(req).await
    }
    async fn get_threads(&self, req: GetThreadsRequest) -> Result<GetThreadsResponse> {
        self.0.get_threads(req).await
    }
    async fn upgrade_room(&self, req: UpgradeRoomRequest) -> Result<UpgradeRoomResponse> {
        self.0.upgrade_room(req).await
    }
    async fn thirdparty(&self, req: ThirdpartyRequest) -> Result<ThirdpartyResponse> {
        self.0.thirdparty(req).await
    }
    async fn ping_appservice(&self, req: PingAppserviceRequest) -> Result<PingAppserviceResponse> {
        self.0.ping_appservice(req).await
    }

    async fn set_appservice_listing(&self, req: SetAppserviceListingRequest) -> Result<Empty> {
        self.0.set_appservice_listing(req).await
    }

    async fn set_alias(&self, req: SetAliasRequest) -> Result<Empty> {
        self.0.set_alias(req).await
    }
    async fn delete_alias(&self, req: DeleteAliasRequest) -> Result<Empty> {
        self.0.delete_alias(req).await
    }
    async fn room_aliases(&self, req: RoomAliasesRequest) -> Result<RoomAliasesResponse> {
        self.0.room_aliases(req).await
    }
    async fn get_directory_visibility(&self, req: GetDirectoryVisibilityRequest) -> Result<DirectoryVisibility> {
        self.0.get_directory_visibility(req).await
    }
    async fn set_directory_visibility(&self, req: SetDirectoryVisibilityRequest) -> Result<Empty> {
        self.0.set_directory_visibility(req).await
    }
    async fn public_rooms(&self, req: PublicRoomsRequest) -> Result<PublicRoomsResponse> {
        self.0.public_rooms(req).await
    }
    async fn search_users(&self, req: SearchUsersRequest) -> Result<SearchUsersResponse> {
        self.0.search_users(req).await
    }
    async fn timestamp_to_event(&self, req: TimestampToEventRequest) -> Result<TimestampToEventResponse> {
        self.0.timestamp_to_event(req).await
    }
    async fn leave_all_rooms(&self, req: LeaveAllRoomsRequest) -> Result<LeaveAllRoomsResponse> {
        self.0.leave_all_rooms(req).await
    }
    async fn search_events(&self, req: SearchEventsRequest) -> Result<SearchEventsResponse> {
        self.0.search_events(req).await
    }
    async fn get_hierarchy(&self, req: HierarchyRequest) -> Result<HierarchyResponse> {
        self.0.get_hierarchy(req).await
    }
    async fn get_room_summary(&self, req: RoomSummaryRequest) -> Result<RoomSummaryResponse> {
        self.0.get_room_summary(req).await
    }
    async fn report_event(&self, req: ReportEventRequest) -> Result<Empty> {
        self.0.report_event(req).await
    }
    async fn report_room(&self, req: ReportRoomRequest) -> Result<Empty> {
        self.0.report_room(req).await
    }
    async fn report_user(&self, req: ReportUserRequest) -> Result<Empty> {
        self.0.report_user(req).await
    }
    async fn mutual_rooms(&self, req: MutualRoomsRequest) -> Result<MutualRoomsResponse> {
        self.0.mutual_rooms(req).await
    }
    async fn room_media(&self, req: RoomMediaRequest) -> Result<RoomMediaResponse> {
        self.0.room_media(req).await
    }
    async fn send_server_notice(&self, req: ServerNoticeRequest) -> Result<ServerNoticeResponse> {
        self.0.send_server_notice(req).await
    }
    async fn admin_list_rooms(&self, req: AdminListRoomsRequest) -> Result<AdminListRoomsResponse> {
        self.0.admin_list_rooms(req).await
    }
    async fn admin_room_details(&self, req: AdminRoomRequest) -> Result<AdminRoom> {
        self.0.admin_room_details(req).await
    }
    async fn admin_room_members(&self, req: AdminRoomRequest) -> Result<AdminRoomMembersResponse> {
        self.0.admin_room_members(req).await
    }
    async fn admin_room_state(&self, req: AdminRoomRequest) -> Result<EventList> {
        self.0.admin_room_state(req).await
    }
    async fn admin_room_messages(&self, req: GetMessagesRequest) -> Result<GetMessagesResponse> {
        self.0.admin_room_messages(req).await
    }
    async fn admin_get_block(&self, req: AdminRoomRequest) -> Result<AdminBlockStatus> {
        self.0.admin_get_block(req).await
    }
    async fn admin_set_block(&self, req: AdminSetBlockRequest) -> Result<AdminBlockStatus> {
        self.0.admin_set_block(req).await
    }
    async fn admin_make_room_admin(&self, req: AdminMakeRoomAdminRequest) -> Result<Empty> {
        self.0.admin_make_room_admin(req).await
    }
    async fn admin_delete_status(&self, req: AdminDeleteStatusRequest) -> Result<AdminDeletionList> {
        self.0.admin_delete_status(req).await
    }
    async fn admin_background_updates(&self, _: Empty) -> Result<BackgroundUpdates> {
        self.0.admin_background_updates().await
    }
    async fn admin_set_background_updates(&self, req: SetBackgroundUpdatesRequest) -> Result<BackgroundUpdates> {
        self.0.admin_set_background_updates(req).await
    }
    async fn admin_list_event_reports(&self, req: AdminListEventReportsRequest) -> Result<AdminEventReportList> {
        self.0.admin_list_event_reports(req).await
    }
    async fn admin_event_report(&self, req: AdminEventReportRequest) -> Result<AdminEventReportEntry> {
        self.0.admin_event_report(req).await
    }
    async fn admin_delete_event_report(&self, req: AdminEventReportRequest) -> Result<Empty> {
        self.0.admin_delete_event_report(req).await
    }
    async fn admin_delete_room(&self, req: AdminDeleteRoomRequest) -> Result<AdminDeletion> {
        crate::admin::delete::start(&self.0, req).await
    }
}
