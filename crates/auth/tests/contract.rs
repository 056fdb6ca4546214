//! The auth service contract: every scenario runs against the local implementation and
//! against it behind gRPC (`AuthGrpcServer` + `AuthGrpcClient`), each on its own database.
//! Scenarios live in `contract/*.rs` and take `(Arc<dyn AuthService>, Pool)`; the pool
//! reaches the test database for the few facts no RPC can set up.

mod common;

#[path = "contract/accounts.rs"]
mod accounts;
#[path = "contract/appservices.rs"]
mod appservices;
#[path = "contract/devices.rs"]
mod devices;
#[path = "contract/guests.rs"]
mod guests;
#[path = "contract/oauth.rs"]
mod oauth;
#[path = "contract/profiles.rs"]
mod profiles;
#[path = "contract/registration.rs"]
mod registration;
#[path = "contract/sessions.rs"]
mod sessions;
#[path = "contract/sso.rs"]
mod sso;
#[path = "contract/threepids.rs"]
mod threepids;
#[path = "contract/tokens.rs"]
mod tokens;
#[path = "contract/uia.rs"]
mod uia;
#[path = "contract/uia_params.rs"]
mod uia_params;

trellis_testkit::contract! {
    setup = crate::common::Harness::new;
    run = crate::common::run;
    sso::sso_refusals with crate::sso::sso_config(),
    uia::uia_register_flow,
    uia::completed_registration_session_replays,
    uia::dummy_without_session_is_accepted,
    uia::uia_failures,
    uia_params::empty_register_body_is_a_challenge,
    uia_params::registration_remembers_parameters,
    uia_params::remembered_inhibit_login,
    uia_params::replay_without_username,
    uia_params::failed_stage_lists_completed,
    accounts::new_devices_are_seen_at_login,
    accounts::whois_is_for_yourself_or_an_admin,
    accounts::renaming_a_device_changes_the_device_list,
    accounts::openid_tokens,
    registration::username_rules,
    registration::register_checks_come_before_uia,
    registration::register_with_inhibit_login,
    registration::register_without_username_generates_numeric_ids,
    registration::concurrent_registrations_of_one_name,
    registration::registration_disabled with crate::common::closed_config(),
    registration::guests_forbidden_by_default,
    registration::guests_when_allowed with crate::common::guest_config(),
    guests::guest_upgrades_to_a_full_account with crate::common::guest_config(),
    guests::guest_cannot_upgrade_others with crate::common::guest_config(),
    sessions::login_forms,
    sessions::wrong_password_and_unknown_user,
    sessions::deactivated_user,
    sessions::authenticate_and_logout,
    sessions::logout_all_devices,
    sessions::login_with_existing_device_replaces_its_token,
    profiles::profile_get_set_clear,
    profiles::custom_profile_fields,
    profiles::profile_errors,
    devices::delete_devices_needs_the_password,
    devices::backup_keeps_the_better_key,
    tokens::refresh_rotation with crate::common::tokens_config(),
    tokens::expired_token_is_a_soft_logout with crate::common::tokens_config(),
    tokens::login_token_once with crate::common::tokens_config(),
    tokens::login_tokens_off,
    tokens::registration_token_operations,
    tokens::registration_token_uses with crate::common::tokens_config(),
    tokens::validity_when_registration_is_off with crate::common::closed_config(),
    oauth::oauth_codes_are_single_use_short_lived_and_hashed,
    oauth::oauth_device_codes_expire,
    oauth::oauth_registration_follows_the_registration_rules with crate::common::tokens_config(),
    oauth::oauth_is_off_unless_enabled with crate::common::oauth_off_config(),
    threepids::email_needs_configuring,
    threepids::threepid_rules with crate::common::email_config(),
    threepids::password_reset_by_email with crate::common::email_config(),
    threepids::registration_with_an_email with crate::common::email_config(),
}
