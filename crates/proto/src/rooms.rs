//! The rooms service contract: room creation, events, membership, state, history, redaction,
//! relations, upgrades, aliases and the room directory.

pub use crate::pb::rooms::*;

service! {
    /// Rooms and their events: the only writer of the event stream.
    pub trait RoomsService as "rooms" {
        fn create_room(CreateRoomRequest) -> CreateRoomResponse;
        /// Authorises, persists and announces one event (idempotent per device and txn ID).
        fn send_event(SendEventRequest) -> SendEventResponse;
        fn change_membership(MembershipRequest) -> MembershipResponse;
        /// Invites an address no one has bound: stored on the identity server, shown in the
        /// room as `m.room.third_party_invite` (`M_FORBIDDEN` for a sender who may not invite).
        fn invite_threepid(InviteThreepidRequest) -> Empty;
        /// An identity server's `/3pid/onbind`: each invite whose signature and key check out
        /// becomes the user's `invite`, sent as the inviter (`M_FORBIDDEN` naming the last
        /// refusal otherwise).
        fn threepid_bound(ThreepidBoundRequest) -> Empty;
        fn get_state_event(GetStateEventRequest) -> StateEventResponse;
        fn get_state(GetStateRequest) -> EventList;
        fn get_messages(GetMessagesRequest) -> GetMessagesResponse;
        fn resolve_alias(ResolveAliasRequest) -> ResolveAliasResponse;
        fn joined_rooms(JoinedRoomsRequest) -> JoinedRoomsResponse;
        fn profile_changed(ProfileChangedRequest) -> ProfileChangedResponse;
        /// Hides a room the user left from their history (`M_UNKNOWN` 400 while still in it).
        fn forget(ForgetRequest) -> Empty;
        /// One event the user may see (`M_NOT_FOUND` otherwise).
        fn get_event(GetEventRequest) -> EventResponse;
        fn get_context(GetContextRequest) -> GetContextResponse;
        fn get_members(GetMembersRequest) -> EventList;
        fn joined_members(JoinedMembersRequest) -> JoinedMembersResponse;
        /// Sends a redaction (idempotent per device and txn ID) and strips the target.
        fn redact(RedactRequest) -> SendEventResponse;
        fn get_relations(GetRelationsRequest) -> GetRelationsResponse;
        fn get_threads(GetThreadsRequest) -> GetThreadsResponse;
        fn upgrade_room(UpgradeRoomRequest) -> UpgradeRoomResponse;
        fn set_alias(SetAliasRequest) -> Empty;
        /// An application service lists a room in one of its networks' lists, or unlists it.
        fn set_appservice_listing(SetAppserviceListingRequest) -> Empty;
        /// Third-party protocols and lookups, asked of the application services.
        fn thirdparty(ThirdpartyRequest) -> ThirdpartyResponse;
        /// Pings an application service for itself (`M_FORBIDDEN` for another's ID).
        fn ping_appservice(PingAppserviceRequest) -> PingAppserviceResponse;
        fn delete_alias(DeleteAliasRequest) -> Empty;
        fn room_aliases(RoomAliasesRequest) -> RoomAliasesResponse;
        fn get_directory_visibility(GetDirectoryVisibilityRequest) -> DirectoryVisibility;
        fn set_directory_visibility(SetDirectoryVisibilityRequest) -> Empty;
        fn public_rooms(PublicRoomsRequest) -> PublicRoomsResponse;
        /// Users the requester shares a room with or who are in public rooms, by name or ID.
        fn search_users(SearchUsersRequest) -> SearchUsersResponse;
        /// The visible event closest to a time, in one direction (`M_NOT_FOUND` if none).
        fn timestamp_to_event(TimestampToEventRequest) -> TimestampToEventResponse;
        /// Deactivation: leaves every joined, invited or knocked room; the rooms left.
        fn leave_all_rooms(LeaveAllRoomsRequest) -> LeaveAllRoomsResponse;
        /// Full-text search of the events the user may see, by rank or most recent first.
        fn search_events(SearchEventsRequest) -> SearchEventsResponse;
        /// A page of the rooms below a space the user may see, depth first.
        fn get_hierarchy(HierarchyRequest) -> HierarchyResponse;
        /// A room's summary, if the requester may see it (`M_NOT_FOUND` otherwise).
        fn get_room_summary(RoomSummaryRequest) -> RoomSummaryResponse;
        /// Reports an event of a room the reporter is in (`M_NOT_FOUND` otherwise).
        fn report_event(ReportEventRequest) -> Empty;
        /// Reports a room this server knows (`M_NOT_FOUND` otherwise).
        fn report_room(ReportRoomRequest) -> Empty;
        /// Reports a user (`M_NOT_FOUND` for an unknown local user).
        fn report_user(ReportUserRequest) -> Empty;
        /// The rooms two users are both joined to, a page at a time.
        fn mutual_rooms(MutualRoomsRequest) -> MutualRoomsResponse;
        /// The media a room's events show, this server's and others' (`M_NOT_FOUND` for an
        /// unknown room).
        fn room_media(RoomMediaRequest) -> RoomMediaResponse;
        /// Sends a server notice to a user, making their notices room if they have none
        /// (400 `M_UNKNOWN` when `[server_notices]` is off; `M_NOT_FOUND` for an unknown user).
        fn send_server_notice(ServerNoticeRequest) -> ServerNoticeResponse;
        /// Server admins' view of rooms (`M_NOT_FOUND` for an unknown room).
        fn admin_list_rooms(AdminListRoomsRequest) -> AdminListRoomsResponse;
        fn admin_room_details(AdminRoomRequest) -> AdminRoom;
        fn admin_room_members(AdminRoomRequest) -> AdminRoomMembersResponse;
        fn admin_room_state(AdminRoomRequest) -> EventList;
        fn admin_room_messages(GetMessagesRequest) -> GetMessagesResponse;
        fn admin_get_block(AdminRoomRequest) -> AdminBlockStatus;
        fn admin_set_block(AdminSetBlockRequest) -> AdminBlockStatus;
        fn admin_make_room_admin(AdminMakeRoomAdminRequest) -> Empty;
        /// Starts a deletion in the background; its status at once.
        fn admin_delete_room(AdminDeleteRoomRequest) -> AdminDeletion;
        fn admin_delete_status(AdminDeleteStatusRequest) -> AdminDeletionList;
        /// The background work under way, and whether it may run.
        fn admin_background_updates(Empty) -> BackgroundUpdates;
        /// Pauses (`enabled: false`) or resumes it.
        fn admin_set_background_updates(SetBackgroundUpdatesRequest) -> BackgroundUpdates;
        fn admin_list_event_reports(AdminListEventReportsRequest) -> AdminEventReportList;
        fn admin_event_report(AdminEventReportRequest) -> AdminEventReportEntry;
        fn admin_delete_event_report(AdminEventReportRequest) -> Empty;
    }
    client RoomsGrpcClient = rooms_client::RoomsClient<tonic::transport::Channel>;
    server RoomsGrpcServer = rooms_server::{RoomsServer, Rooms};
}
