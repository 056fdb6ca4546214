//! The auth service contract: accounts, devices, tokens, user-interactive auth, profiles.

pub use crate::pb::auth::*;

service! {
    /// Accounts and sessions. The only writer of users, devices, access tokens, UIA sessions
    /// and profiles.
    pub trait AuthService as "auth" {
        /// Registers an account; answers a UIA challenge until the `auth` stages are done.
        fn register(RegisterRequest) -> RegisterResponse;
        fn check_username(CheckUsernameRequest) -> CheckUsernameResponse;
        /// Completes one stage of a UIA session from the fallback page (`M_FORBIDDEN`,
        /// `M_UNAUTHORIZED`, `M_MISSING_PARAM` when it fails; 400 for an unknown session).
        fn uia_fallback(UiaFallbackRequest) -> AuthAck;
        fn login(LoginRequest) -> LoginResponse;
        /// Resolves an access token; `M_UNKNOWN_TOKEN` if it is not (or no longer) valid.
        fn authenticate(AuthenticateRequest) -> Requester;
        fn logout(LogoutRequest) -> LogoutResponse;
        fn get_profile(GetProfileRequest) -> Profile;
        /// Sets (or clears) the display name or avatar, then carries it into the user's member
        /// events through the rooms service.
        fn set_profile(SetProfileRequest) -> Profile;
        /// Sets a custom profile field (`M_KEY_TOO_LARGE`, `M_PROFILE_TOO_LARGE`, `M_INVALID_PARAM`).
        fn set_profile_field(SetProfileFieldRequest) -> Profile;
        fn delete_profile_field(DeleteProfileFieldRequest) -> Profile;
        fn list_devices(ListDevicesRequest) -> DeviceList;
        /// `M_NOT_FOUND` for a device the user does not have.
        fn get_device(GetDeviceRequest) -> Device;
        fn update_device(UpdateDeviceRequest) -> AuthAck;
        /// Needs UIA (password); the devices' tokens die with them.
        fn delete_devices(DeleteDevicesRequest) -> AuthAck;
        /// Needs UIA (password); with `logout_devices` every other device is removed.
        fn change_password(ChangePasswordRequest) -> AuthAck;
        /// Needs UIA (password); no more logins, every device and token removed, then every
        /// room left through the rooms service.
        fn deactivate(DeactivateRequest) -> ThreepidUnbindResult;
        fn create_backup_version(CreateBackupVersionRequest) -> BackupVersion;
        fn get_backup_version(GetBackupVersionRequest) -> BackupVersion;
        fn update_backup_version(UpdateBackupVersionRequest) -> AuthAck;
        fn delete_backup_version(GetBackupVersionRequest) -> AuthAck;
        fn get_room_keys(RoomKeysRequest) -> RoomKeysJson;
        /// `M_WRONG_ROOM_KEYS_VERSION` unless `version` is the current one.
        fn put_room_keys(PutRoomKeysRequest) -> RoomKeysCount;
        fn delete_room_keys(RoomKeysRequest) -> RoomKeysCount;
        /// `M_FORBIDDEN` for another user's token.
        fn request_openid_token(OpenidTokenRequest) -> OpenidToken;
        /// `M_UNKNOWN_TOKEN` for an unknown or expired token.
        fn openid_userinfo(OpenidUserinfoRequest) -> OpenidUserinfo;
        /// For the user themself or an admin (else `M_FORBIDDEN`).
        fn whois(WhoisRequest) -> WhoisResponse;
        /// Rotates a refresh token: a new pair; the old refresh token works until the new
        /// pair is first used. `M_UNKNOWN_TOKEN` (401) for one unknown or used up.
        fn refresh(RefreshRequest) -> RefreshResponse;
        /// Needs UIA (password) every time; `M_UNRECOGNIZED` (404) when not enabled.
        fn create_login_token(CreateLoginTokenRequest) -> LoginToken;
        /// Whether a registration token can be used now (`M_FORBIDDEN` when registration is off).
        fn registration_token_validity(RegistrationTokenRequest) -> RegistrationTokenValidity;
        /// `M_INVALID_PARAM` for a bad token, length, use count or expiry; `M_INVALID_PARAM`
        /// (400) for a token that exists.
        fn create_registration_token(CreateRegistrationTokenRequest) -> RegistrationToken;
        fn list_registration_tokens(ListRegistrationTokensRequest) -> RegistrationTokenList;
        /// `M_NOT_FOUND` for an unknown token.
        fn get_registration_token(RegistrationTokenRequest) -> RegistrationToken;
        fn update_registration_token(UpdateRegistrationTokenRequest) -> RegistrationToken;
        fn delete_registration_token(RegistrationTokenRequest) -> AuthAck;
        /// `M_FORBIDDEN` unless the user is a server admin (every admin endpoint asks first).
        fn require_admin(RequireAdminRequest) -> AuthAck;
        fn admin_list_users(AdminListUsersRequest) -> AdminUserList;
        /// `M_NOT_FOUND` for an unknown user.
        fn admin_get_user(AdminUserRequest) -> AdminUser;
        /// Creates or modifies a local account (`M_INVALID_PARAM` for another server's user).
        fn admin_put_user(AdminPutUserRequest) -> AdminPutUserResponse;
        /// Deactivation without user-interactive auth (`M_NOT_FOUND` for an unknown user).
        fn admin_deactivate(AdminDeactivateRequest) -> AuthAck;
        fn admin_reset_password(AdminResetPasswordRequest) -> AuthAck;
        fn admin_delete_devices(AdminDeleteDevicesRequest) -> AuthAck;
        /// A token for another user on a new device (`M_INVALID_PARAM` for the admin themself).
        fn admin_login_as(AdminLoginAsRequest) -> AdminLoginAsResponse;
        /// Suspends or locks an account, or lifts it (spec 1.18): `M_NOT_FOUND` for an unknown
        /// or deactivated account, `M_FORBIDDEN` to change oneself or another admin.
        fn admin_moderate(AdminModerateRequest) -> AdminModeration;
        /// A local user's rate-limit override (`M_NOT_FOUND` for an unknown user).
        fn admin_get_ratelimit_override(AdminUserRequest) -> RatelimitOverrideAnswer;
        /// Sets or removes it; ends remembered validations of the user's tokens.
        fn admin_set_ratelimit_override(AdminSetRatelimitOverrideRequest) -> RatelimitOverrideAnswer;
        /// RFC 7591 registration (`invalid_redirect_uri`, `invalid_client_metadata`).
        fn oauth_register_client(OauthClientMetadata) -> OauthClient;
        /// `invalid_client` / `invalid_redirect_uri` (shown to the user, never redirected);
        /// other refusals come back as `error_redirect`.
        fn oauth_check_authorization(OauthAuthorizationRequest) -> OauthAuthorizationCheck;
        /// A new browser session for a password (or a new account); `M_FORBIDDEN` for a
        /// wrong one, the registration errors when registering.
        fn oauth_browser_login(OauthBrowserLoginRequest) -> OauthBrowserSession;
        /// `M_UNKNOWN_TOKEN` for a session unknown or expired.
        fn oauth_browser_session(OauthSessionRequest) -> OauthBrowserSession;
        fn oauth_browser_logout(OauthSessionRequest) -> AuthAck;
        /// The session's user consents: a single-use code bound to the client, the redirect
        /// URI and the PKCE challenge.
        fn oauth_grant_code(OauthGrantCodeRequest) -> OauthRedirect;
        fn oauth_device_authorize(OauthDeviceAuthorizationRequest) -> OauthDeviceAuthorization;
        /// `M_NOT_FOUND` for an unknown or expired user code.
        fn oauth_approve_device(OauthApproveDeviceRequest) -> OauthDeviceApproval;
        /// The token endpoint's grants (`invalid_grant`, `unsupported_grant_type`, the device
        /// grant's `authorization_pending`, `slow_down`, `expired_token`, `access_denied`).
        fn oauth_token(OauthTokenRequest) -> OauthTokenResponse;
        /// Ends the session (device) of an access or refresh token; unknown tokens are fine.
        fn oauth_revoke(OauthRevokeRequest) -> OauthRevoked;
        fn oauth_delete_device(OauthDeleteDeviceRequest) -> AuthAck;
        /// `M_FORBIDDEN` for a wrong current password; the other devices stay signed in.
        fn oauth_change_password(OauthChangePasswordRequest) -> AuthAck;
        /// Mails a validation link (`M_THREEPID_IN_USE` for an address of another account
        /// when adding or registering, `M_THREEPID_NOT_FOUND` for one of no account when
        /// resetting a password, `M_THREEPID_MEDIUM_NOT_SUPPORTED` without `[email]`); the
        /// same `send_attempt` again answers the same session without mailing.
        fn request_threepid_token(RequestThreepidTokenRequest) -> ThreepidSession;
        /// The link in the mail: `M_THREEPID_AUTH_FAILED` for a wrong or expired token.
        fn submit_threepid_token(SubmitThreepidTokenRequest) -> ThreepidValidated;
        fn list_threepids(ListThreepidsRequest) -> ThreepidList;
        /// Needs UIA (password) unless `without_uia`; `M_THREEPID_AUTH_FAILED` for a session
        /// not validated, `M_THREEPID_IN_USE` for an address of another account.
        fn add_threepid(AddThreepidRequest) -> AuthAck;
        /// Removes the 3PID from the account and unbinds it from identity servers.
        fn delete_threepid(DeleteThreepidRequest) -> ThreepidUnbindResult;
        /// Unbinds on identity servers only; the account keeps the 3PID.
        fn unbind_threepid(DeleteThreepidRequest) -> ThreepidUnbindResult;
        /// Binds the session's 3PID to the user on the identity server (proxied).
        fn bind_threepid(BindThreepidRequest) -> AuthAck;
        /// `POST /account/password` without a token: the email stage names the account.
        fn reset_password(ResetPasswordRequest) -> ResetPasswordResponse;
        /// Asks the identity server who has a 3PID (third-party invites); none if nobody.
        fn lookup_threepid(LookupThreepidRequest) -> ThreepidOwner;
        /// `M_NOT_FOUND` for an unknown provider; 502 `M_UNKNOWN` when its discovery fails.
        fn sso_start(SsoStartRequest) -> SsoStartResponse;
        /// 400 (`M_INVALID_PARAM`, or `M_FORBIDDEN` for an ID token that fails its checks or
        /// a state not started in this browser) for anything wrong with the answer; 502 when
        /// the provider cannot be reached.
        fn sso_callback(SsoCallbackRequest) -> SsoCallbackResponse;
        /// 403 `M_FORBIDDEN` for a ticket the CAS server does not vouch for; 502 when it
        /// cannot be reached.
        fn cas_ticket(CasTicketRequest) -> SsoCallbackResponse;
    }
    client AuthGrpcClient = auth_client::AuthClient<tonic::transport::Channel>;
    server AuthGrpcServer = auth_server::{AuthServer, Auth};
}
