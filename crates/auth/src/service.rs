//! [`Auth`]: the auth service on PostgreSQL, and its [`AuthService`] implementation.

use std::{
    sync::{Arc, atomic::AtomicI64},
    time::Duration,
};

use deadpool_postgres::Pool;
use trellis_bus::Bus;
use trellis_core::Result;
use trellis_proto::{auth::*, rooms::RoomsService};

use crate::{
    cache::{TOKEN_CACHE_CAPACITY, TokenCache},
    config::AuthConfig,
    uia_types::Uia,
};

/// A device's last-seen time and IP are written at most once per this interval per process
/// (Synapse keeps a similar granularity), never on every request.
pub const LAST_SEEN_EVERY: Duration = Duration::from_secs(60);

/// The auth service. Share it as `Arc<dyn AuthService>`.
pub struct Auth {
    pub(crate) pool: Pool,
    pub(crate) config: AuthConfig,
    pub(crate) tokens: TokenCache,
    pub(crate) uia: Uia,
    /// Devices whose last-seen record was written lately (see [`LAST_SEEN_EVERY`]).
    pub(crate) seen: moka::future::Cache<(String, String), ()>,
    /// The highest generated numeric localpart handed out by this process (0: not loaded).
    pub(crate) last_numeric: AtomicI64,
    /// Wakes sync workers when device lists change; none in tests that do not sync.
    pub(crate) bus: Option<Arc<dyn Bus>>,
    /// The configured application services (`appservice.rs`).
    pub(crate) appservices: trellis_core::appservice::Registry,
    /// Validation mails, when `[email]` configures an SMTP server.
    pub(crate) mailer: Option<crate::threepid::Mailer>,
    /// Calls identity servers; made on the first call (few servers bind 3PIDs).
    pub(crate) id_servers: std::sync::OnceLock<reqwest::Client>,
    /// Upstream OpenID Connect providers' discovery and keys (`sso/`).
    pub(crate) sso: crate::sso::Upstream,
    /// The rooms service, told of deactivations and profile changes (`rooms.rs`); none in
    /// tests of this service alone and in command-line tools.
    pub(crate) rooms: Option<Arc<dyn RoomsService>>,
}

impl Auth {
    pub fn new(pool: Pool, config: AuthConfig) -> Auth {
        let mailer = crate::threepid::mailer(config.email.as_ref());
        Auth {
            pool,
            tokens: TokenCache::new(config.token_cache, TOKEN_CACHE_CAPACITY),
            config,
            uia: Uia::default(),
            seen: moka::future::Cache::builder()
                .time_to_live(LAST_SEEN_EVERY)
                .max_capacity(TOKEN_CACHE_CAPACITY)
                .build(),
            last_numeric: AtomicI64::new(0),
            bus: None,
            appservices: Default::default(),
            mailer,
            id_servers: Default::default(),
            sso: Default::default(),
            rooms: None,
        }
    }

    /// Has deactivated accounts leave their rooms and carries display name and avatar changes
    /// into member events, through `rooms`.
    pub fn with_rooms(mut self, rooms: Arc<dyn RoomsService>) -> Auth {
        self.rooms = Some(rooms);
        self
    }

    /// Announces device-list changes on `bus`.
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Auth {
        self.bus = Some(bus);
        self
    }

    /// Serves the application services of `registry` (their tokens, users and namespaces).
    pub fn with_appservices(mut self, registry: trellis_core::appservice::Registry) -> Auth {
        self.appservices = registry;
        self
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }
}

#[async_trait::async_trait]
impl AuthService for Auth {
    async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse> {
        self.do_register(req).await
    }

    async fn uia_fallback(&self, req: UiaFallbackRequest) -> Result<AuthAck> {
        self.do_uia_fallback(req).await
    }

    async fn check_username(&self, req: CheckUsernameRequest) -> Result<CheckUsernameResponse> {
        self.do_check_username(req).await
    }

    async fn login(&self, req: LoginRequest) -> Result<LoginResponse> {
        self.do_login(req).await
    }

    async fn authenticate(&self, req: AuthenticateRequest) -> Result<Requester> {
        self.do_authenticate(req).await
    }

    async fn logout(&self, req: LogoutRequest) -> Result<LogoutResponse> {
        self.do_logout(req).await
    }

    async fn get_profile(&self, req: GetProfileRequest) -> Result<Profile> {
        self.do_get_profile(req).await
    }

    async fn set_profile(&self, req: SetProfileRequest) -> Result<Profile> {
        self.do_set_profile(req).await
    }
    async fn set_profile_field(&self, req: SetProfileFieldRequest) -> Result<Profile> {
        self.do_set_profile_field(req).await
    }
    async fn delete_profile_field(&self, req: DeleteProfileFieldRequest) -> Result<Profile> {
        self.do_delete_profile_field(req).await
    }

    async fn list_devices(&self, req: ListDevicesRequest) -> Result<DeviceList> {
        self.do_list_devices(req).await
    }

    async fn get_device(&self, req: GetDeviceRequest) -> Result<Device> {
        self.do_get_device(req).await
    }

    async fn update_device(&self, req: UpdateDeviceRequest) -> Result<AuthAck> {
        self.do_update_device(req).await
    }

    async fn delete_devices(&self, req: DeleteDevicesRequest) -> Result<AuthAck> {
        self.do_delete_devices(req).await
    }

    async fn change_password(&self, req: ChangePasswordRequest) -> Result<AuthAck> {
        self.do_change_password(req).await
    }

    async fn deactivate(&self, req: DeactivateRequest) -> Result<ThreepidUnbindResult> {
        self.do_deactivate(req).await
    }

    async fn create_backup_version(&self, req: CreateBackupVersionRequest) -> Result<BackupVersion> {
        self.do_create_backup_version(req).await
    }

    async fn get_backup_version(&self, req: GetBackupVersionRequest) -> Result<BackupVersion> {
        self.do_get_backup_version(req).await
    }

    async fn update_backup_version(&self, req: UpdateBackupVersionRequest) -> Result<AuthAck> {
        self.do_update_backup_version(req).await
    }

    async fn delete_backup_version(&self, req: GetBackupVersionRequest) -> Result<AuthAck> {
        self.do_delete_backup_version(req).await
    }

    async fn get_room_keys(&self, req: RoomKeysRequest) -> Result<RoomKeysJson> {
        self.do_get_room_keys(req).await
    }

    async fn put_room_keys(&self, req: PutRoomKeysRequest) -> Result<RoomKeysCount> {
        self.do_put_room_keys(req).await
    }

    async fn delete_room_keys(&self, req: RoomKeysRequest) -> Result<RoomKeysCount> {
        self.do_delete_room_keys(req).await
    }

    async fn request_openid_token(&self, req: OpenidTokenRequest) -> Result<OpenidToken> {
        self.do_request_openid_token(req).await
    }

    async fn openid_userinfo(&self, req: OpenidUserinfoRequest) -> Result<OpenidUserinfo> {
        self.do_openid_userinfo(req).await
    }

    async fn whois(&self, req: WhoisRequest) -> Result<WhoisResponse> {
        self.do_whois(req).await
    }

    async fn refresh(&self, req: RefreshRequest) -> Result<RefreshResponse> {
        self.do_refresh(req).await
    }

    async fn create_login_token(&self, req: CreateLoginTokenRequest) -> Result<LoginToken> {
        self.do_create_login_token(req).await
    }

    async fn registration_token_validity(&self, req: RegistrationTokenRequest) -> Result<RegistrationTokenValidity> {
        self.do_registration_token_validity(req).await
    }

    async fn create_registration_token(&self, req: CreateRegistrationTokenRequest) -> Result<RegistrationToken> {
        self.do_create_registration_token(req).await
    }

    async fn list_registration_tokens(&self, req: ListRegistrationTokensRequest) -> Result<RegistrationTokenList> {
        self.do_list_registration_tokens(req).await
    }

    async fn get_registration_token(&self, req: RegistrationTokenRequest) -> Result<RegistrationToken> {
        self.do_get_registration_token(req).await
    }

    async fn update_registration_token(&self, req: UpdateRegistrationTokenRequest) -> Result<RegistrationToken> {
        self.do_update_registration_token(req).await
    }

    async fn delete_registration_token(&self, req: RegistrationTokenRequest) -> Result<AuthAck> {
        self.do_delete_registration_token(req).await
    }

    async fn require_admin(&self, req: RequireAdminRequest) -> Result<AuthAck> {
        self.do_require_admin(req).await
    }

    async fn admin_list_users(&self, req: AdminListUsersRequest) -> Result<AdminUserList> {
        self.do_admin_list_users(req).await
    }

    async fn admin_get_user(&self, req: AdminUserRequest) -> Result<AdminUser> {
        self.do_admin_get_user(req).await
    }

    async fn admin_put_user(&self, req: AdminPutUserRequest) -> Result<AdminPutUserResponse> {
        self.do_admin_put_user(req).await
    }

    async fn admin_deactivate(&self, req: AdminDeactivateRequest) -> Result<AuthAck> {
        self.do_admin_deactivate(req).await
    }

    async fn admin_reset_password(&self, req: AdminResetPasswordRequest) -> Result<AuthAck> {
        self.do_admin_reset_password(req).await
    }

    async fn admin_delete_devices(&self, req: AdminDeleteDevicesRequest) -> Result<AuthAck> {
        self.do_admin_delete_devices(req).await
    }

    async fn admin_login_as(&self, req: AdminLoginAsRequest) -> Result<AdminLoginAsResponse> {
        self.do_admin_login_as(req).await
    }

    async fn admin_moderate(&self, req: AdminModerateRequest) -> Result<AdminModeration> {
        self.do_admin_moderate(req).await
    }

    async fn admin_get_ratelimit_override(&self, req: AdminUserRequest) -> Result<RatelimitOverrideAnswer> {
        self.do_admin_get_ratelimit_override(req).await
    }

    async fn admin_set_ratelimit_override(
        &self,
        req: AdminSetRatelimitOverrideRequest,
    ) -> Result<RatelimitOverrideAnswer> {
        self.do_admin_set_ratelimit_override(req).await
    }

    async fn oauth_register_client(&self, req: OauthClientMetadata) -> Result<OauthClient> {
        self.do_oauth_register_client(req).await
    }

    async fn oauth_check_authorization(&self, req: OauthAuthorizationRequest) -> Result<OauthAuthorizationCheck> {
        self.do_oauth_check_authorization(req).await
    }

    async fn oauth_browser_login(&self, req: OauthBrowserLoginRequest) -> Result<OauthBrowserSession> {
        self.do_oauth_browser_login(req).await
    }

    async fn oauth_browser_session(&self, req: OauthSessionRequest) -> Result<OauthBrowserSession> {
        self.do_oauth_browser_session(req).await
    }

    async fn oauth_browser_logout(&self, req: OauthSessionRequest) -> Result<AuthAck> {
        self.do_oauth_browser_logout(req).await
    }

    async fn oauth_grant_code(&self, req: OauthGrantCodeRequest) -> Result<OauthRedirect> {
        self.do_oauth_grant_code(req).await
    }

    async fn oauth_device_authorize(&self, req: OauthDeviceAuthorizationRequest) -> Result<OauthDeviceAuthorization> {
        self.do_oauth_device_authorize(req).await
    }

    async fn oauth_approve_device(&self, req: OauthApproveDeviceRequest) -> Result<OauthDeviceApproval> {
        self.do_oauth_approve_device(req).await
    }

    async fn oauth_token(&self, req: OauthTokenRequest) -> Result<OauthTokenResponse> {
        self.do_oauth_token(req).await
    }

    async fn oauth_revoke(&self, req: OauthRevokeRequest) -> Result<OauthRevoked> {
        self.do_oauth_revoke(req).await
    }

    async fn oauth_delete_device(&self, req: OauthDeleteDeviceRequest) -> Result<AuthAck> {
        self.do_oauth_delete_device(req).await
    }

    async fn oauth_change_password(&self, req: OauthChangePasswordRequest) -> Result<AuthAck> {
        self.do_oauth_change_password(req).await
    }

    async fn request_threepid_token(&self, req: RequestThreepidTokenRequest) -> Result<ThreepidSession> {
        self.do_request_threepid_token(req).await
    }

    async fn submit_threepid_token(&self, req: SubmitThreepidTokenRequest) -> Result<ThreepidValidated> {
        self.do_submit_threepid_token(req).await
    }

    async fn list_threepids(&self, req: ListThreepidsRequest) -> Result<ThreepidList> {
        self.do_list_threepids(req).await
    }

    async fn add_threepid(&self, req: AddThreepidRequest) -> Result<AuthAck> {
        self.do_add_threepid(req).await
    }

    async fn delete_threepid(&self, req: DeleteThreepidRequest) -> Result<ThreepidUnbindResult> {
        self.do_delete_threepid(req, true).await
    }

    async fn unbind_threepid(&self, req: DeleteThreepidRequest) -> Result<ThreepidUnbindResult> {
        self.do_delete_threepid(req, false).await
    }

    async fn bind_threepid(&self, req: BindThreepidRequest) -> Result<AuthAck> {
        self.do_bind_threepid(req).await
    }

    async fn reset_password(&self, req: ResetPasswordRequest) -> Result<ResetPasswordResponse> {
        self.do_reset_password(req).await
    }

    async fn lookup_threepid(&self, req: LookupThreepidRequest) -> Result<ThreepidOwner> {
        self.do_lookup_threepid(req).await
    }

    async fn sso_start(&self, req: SsoStartRequest) -> Result<SsoStartResponse> {
        self.do_sso_start(req).await
    }

    async fn sso_callback(&self, req: SsoCallbackRequest) -> Result<SsoCallbackResponse> {
        self.do_sso_callback(req).await
    }

    async fn cas_ticket(&self, req: CasTicketRequest) -> Result<SsoCallbackResponse> {
        self.do_cas_ticket(req).await
    }
}
