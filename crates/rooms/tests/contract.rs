//! Contract tests of the rooms service: every scenario runs against the local
//! implementation and through gRPC (client → server adapter → implementation), each on its
//! own database. Scenarios live in `contract/*.rs` and take a started [`common::Env`].

mod common;

#[path = "contract/admin.rs"]
mod admin;
#[path = "contract/auth_rules.rs"]
mod auth_rules;
#[path = "contract/basics.rs"]
mod basics;
#[path = "contract/bumps.rs"]
mod bumps;
#[path = "contract/conformance.rs"]
mod conformance;
#[path = "contract/directory.rs"]
mod directory;
#[path = "contract/guests.rs"]
mod guests;
#[path = "contract/memberships.rs"]
mod memberships;
#[path = "contract/mutual.rs"]
mod mutual;
#[path = "contract/profiles.rs"]
mod profiles;
#[path = "contract/reading.rs"]
mod reading;
#[path = "contract/redaction.rs"]
mod redaction;
#[path = "contract/relations.rs"]
mod relations;
#[path = "contract/reports.rs"]
mod reports;
#[path = "contract/search.rs"]
mod search;
#[path = "contract/spaces.rs"]
mod spaces;
#[path = "contract/upgrade.rs"]
mod upgrade;
#[path = "contract/versions.rs"]
mod versions;

use common::*;
use trellis_core::ErrorCode;

trellis_testkit::contract!(
    setup = crate::common::env;
    admin::a_waited_deletion_purges_the_room,
    basics::create_room_writes_the_prescribed_events,
    basics::room_versions,
    basics::aliases,
    basics::sending_is_idempotent_per_transaction,
    basics::membership_transitions,
    memberships::joined_pos_marks_where_the_stretch_of_being_joined_began,
    bumps::the_latest_bump_event_is_kept_per_room,
    basics::power_levels_guard_state,
    basics::history_pagination,
    basics::former_members_see_state_as_of_leaving,
    basics::errors_cross_the_hop,
    conformance::join_keeps_custom_content,
    conformance::identical_state_is_the_event_in_place,
    conformance::transaction_ids_are_scoped_to_their_path,
    conformance::redaction_of_an_event_in_another_room_is_refused,
    conformance::pages_with_events_have_an_end,
    conformance::erased_senders_are_hidden_from_those_not_there,
    conformance::self_destructing_messages_are_served_empty_once_due,
    search::search_follows_the_index_and_visibility,
    spaces::hierarchy_and_summaries,
    reports::reports_are_stored,
    mutual::mutual_rooms_page_through_shared_rooms,
    redaction::redacted_events_are_stored_and_served_stripped,
    redaction::redaction_keeps_the_keys_of_the_room_version,
    redaction::v10_redactions_name_their_target_at_the_top_level,
    redaction::redaction_errors,
    reading::joined_visibility_hides_what_came_before,
    reading::invited_and_shared_visibility,
    reading::world_readable_rooms_are_readable_by_anyone,
    reading::former_members_read_until_they_left_then_forget,
    reading::context_around_an_event,
    reading::members_and_joined_members,
    relations::relations_paginate_both_ways_with_filters,
    relations::bundled_aggregations,
    relations::threads_list_latest_activity_first,
    relations::invalid_relations_are_refused,
    directory::alias_lifecycle,
    directory::directory_visibility,
    directory::public_rooms_list_search_and_pages,
    upgrade::upgrade_replaces_the_room,
    upgrade::upgrade_raises_the_upgraders_power_while_copying,
    upgrade::knocking,
    versions::every_version_serves_the_room_lifecycle,
    versions::knocking_and_restricted_rooms_follow_their_versions,
    versions::v12_rooms_are_named_by_their_create_event,
    versions::v12_creators_have_infinite_power,
    versions::upgrades_cross_the_formats,
    profiles::profile_changes_reach_every_joined_room,
    guests::guests_join_only_where_allowed_and_leave_when_revoked,
    auth_rules::create_has_no_previous_events,
    auth_rules::create_room_id_domain_matches_sender,
    auth_rules::create_room_version_is_known,
    auth_rules::unfederated_rooms_refuse_other_servers,
    auth_rules::member_events_need_a_membership,
    auth_rules::join_only_by_the_user_themself,
    auth_rules::join_refused_while_banned,
    auth_rules::join_invite_rule_needs_an_invite,
    auth_rules::join_knock_rule_needs_an_invite,
    auth_rules::join_restricted_rule_needs_an_allowed_membership,
    auth_rules::join_knock_restricted_rule,
    auth_rules::join_public_rule_admits_anyone,
    auth_rules::invite_needs_a_joined_sender,
    auth_rules::invite_refused_for_joined_or_banned_targets,
    auth_rules::invite_needs_the_invite_level,
    auth_rules::leave_by_self_needs_a_membership,
    auth_rules::kick_needs_a_joined_sender,
    auth_rules::kick_needs_power_over_the_target,
    auth_rules::unban_needs_the_ban_level,
    auth_rules::ban_needs_a_joined_sender,
    auth_rules::ban_needs_power_over_the_target,
    auth_rules::knock_needs_a_knock_join_rule,
    auth_rules::knock_only_by_the_user_themself,
    auth_rules::knock_refused_when_banned_invited_or_joined,
    auth_rules::events_need_a_joined_sender,
    auth_rules::event_types_need_their_power_level,
    auth_rules::user_state_keys_belong_to_their_user,
    auth_rules::power_levels_must_be_well_formed,
    auth_rules::power_level_changes_stay_within_the_senders_level,
    auth_rules::power_level_changes_of_users,
    auth_rules::redactions_of_others_need_the_redact_level,
);

/// Rooms whose cached state was evicted still accept events (state reloads from PostgreSQL).
#[tokio::test(flavor = "multi_thread")]
async fn evicted_room_state_reloads() {
    let env = local().await;
    let room = env.svc.create_room(create(ALICE)).await.unwrap().room_id;
    env.svc.send_event(message(ALICE, &room, "before", None)).await.unwrap();
    assert!(trellis_rooms::testing_evict_all(&env.rooms) >= 1, "the room was cached and is now evicted");
    env.svc.send_event(message(ALICE, &room, "after", None)).await.unwrap();
    let err = env.svc.send_event(message(BOB, &room, "intruder", None)).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Forbidden, "auth rules still see the reloaded state");
    assert_eq!(bodies(&messages(&env, ALICE, &room, None, true, 10).await), vec!["after", "before"]);
}
