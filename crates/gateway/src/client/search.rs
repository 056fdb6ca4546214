//! `POST /search`: room events, answered with ruma's response type.

use std::collections::BTreeMap;

use axum::Router;
use ruma::{
    OwnedRoomId, OwnedUserId,
    api::client::search::search_events::v3::{
        self, EventContextResult, GroupingKey, OrderBy, ResultGroup, ResultGroupMap, ResultRoomEvents, SearchResult,
        UserProfile,
    },
};
use trellis_core::Error;
use trellis_proto::rooms::{SearchContext, SearchContextSpec, SearchEventsRequest, SearchEventsResponse, SearchGroup};

use super::{raw, stored_id as id};
use crate::{
    AppState,
    error::{ApiError, ApiResult},
    extract::Ruma,
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(search_events_route)
}

/// # `POST /_matrix/client/v3/search`
async fn search_events_route(s: AppState, req: Ruma<v3::Request>) -> ApiResult<v3::Response> {
    // ruma fills in a default `event_context`; the spec includes context only when asked.
    let body = req.json_object()?;
    let asked_context = body["search_categories"]["room_events"].get("event_context").is_some();
    let (auth, req) = (req.user, req.body);
    let Some(criteria) = req.search_categories.room_events else {
        // No category Trellis searches: nothing found.
        return Ok(v3::Response::new(Default::default()));
    };
    let context = asked_context.then(|| SearchContextSpec {
        before_limit: u32::try_from(criteria.event_context.before_limit).unwrap_or(u32::MAX),
        after_limit: u32::try_from(criteria.event_context.after_limit).unwrap_or(u32::MAX),
        include_profile: criteria.event_context.include_profile,
    });
    let order_by_recent = match criteria.order_by {
        None | Some(OrderBy::Rank) => false,
        Some(OrderBy::Recent) => true,
        Some(other) => return Err(ApiError(Error::invalid_param(format!("unknown order_by {other:?}")))),
    };
    let mut group_by_room = false;
    let mut group_by_sender = false;
    for grouping in &criteria.groupings.group_by {
        match &grouping.key {
            Some(GroupingKey::RoomId) => group_by_room = true,
            Some(GroupingKey::Sender) => group_by_sender = true,
            other => return Err(ApiError(Error::invalid_param(format!("unknown grouping key {other:?}")))),
        }
    }
    let resp = s
        .services
        .rooms
        .search_events(SearchEventsRequest {
            user_id: auth.user_id,
            device_id: auth.device_id,
            search_term: criteria.search_term,
            keys: criteria.keys.unwrap_or_default().iter().map(|k| k.as_str().to_owned()).collect(),
            filter_json: Some(serde_json::to_string(&criteria.filter)?),
            order_by_recent,
            context,
            include_state: criteria.include_state.unwrap_or(false),
            next_batch: req.next_batch,
            group_by_room,
            group_by_sender,
        })
        .await?;
    let mut categories = v3::ResultCategories::new();
    categories.room_events = room_events(resp)?;
    Ok(v3::Response::new(categories))
}

fn room_events(resp: SearchEventsResponse) -> ApiResult<ResultRoomEvents> {
    let mut out = ResultRoomEvents::new();
    out.count = Some(resp.count.try_into().unwrap_or(ruma::UInt::MAX));
    out.next_batch = resp.next_batch;
    out.highlights = resp.highlights;
    for hit in resp.results {
        let mut result = SearchResult::new();
        result.rank = Some(hit.rank);
        result.result = Some(raw(hit.event_json)?);
        if let Some(c) = hit.context {
            result.context = context(c)?;
        }
        out.results.push(result);
    }
    for (room, list) in resp.state {
        let events = list.events_json.into_iter().map(raw).collect::<ApiResult<_>>()?;
        out.state.insert(id(room)?, events);
    }
    let (mut rooms, mut senders) = (BTreeMap::new(), BTreeMap::new());
    for g in resp.groups {
        match g.key.as_str() {
            "room_id" => {
                rooms.insert(id::<OwnedRoomId>(g.value.clone())?, result_group(g)?);
            }
            _ => {
                senders.insert(id::<OwnedUserId>(g.value.clone())?, result_group(g)?);
            }
        }
    }
    if !rooms.is_empty() {
        out.groups.insert(ResultGroupMap::RoomId(rooms));
    }
    if !senders.is_empty() {
        out.groups.insert(ResultGroupMap::Sender(senders));
    }
    Ok(out)
}

fn result_group(g: SearchGroup) -> ApiResult<ResultGroup> {
    let mut group = ResultGroup::new();
    group.next_batch = g.next_batch;
    group.order = Some(g.order.into());
    group.results = g.event_ids.into_iter().map(id).collect::<ApiResult<_>>()?;
    Ok(group)
}

fn context(c: SearchContext) -> ApiResult<EventContextResult> {
    let mut out = EventContextResult::new();
    out.start = Some(c.start);
    out.end = Some(c.end);
    out.events_before = c.events_before_json.into_iter().map(raw).collect::<ApiResult<_>>()?;
    out.events_after = c.events_after_json.into_iter().map(raw).collect::<ApiResult<_>>()?;
    for (user, p) in c.profile_info {
        let mut profile = UserProfile::new();
        profile.displayname = p.displayname;
        profile.avatar_url = p.avatar_url.map(Into::into);
        out.profile_info.insert(id(user)?, profile);
    }
    Ok(out)
}
