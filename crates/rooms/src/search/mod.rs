//! `POST /search` (room events): full-text search in PostgreSQL over the rooms the user may
//! search, by rank or most recent first, with only the events history visibility lets them
//! see; optionally the context around each result with the senders' profiles at the time,
//! the rooms' state, groupings by room or sender, and the words to highlight.

pub(crate) mod index;
mod query;
mod token;

use std::collections::HashMap;

use trellis_core::{Error, Result, StreamToken, time::now_ms};
use trellis_proto::rooms::{
    EventList, SearchContext, SearchContextSpec, SearchEventsRequest, SearchEventsResponse, SearchGroup, SearchHit,
    SearchProfile,
};
use trellis_storage::{
    erasure,
    events::{EventRow, Format, Viewer},
    relations,
};

use self::{
    query::{Page, Readable, Search},
    token::{Only, SearchToken},
};
use crate::{
    Rooms,
    context::{Side, context_page},
    read::{members_of, parse_filter, state_at},
};

const KEYS: &[&str] = &["content.body", "content.name", "content.topic"];
const DEFAULT_LIMIT: u32 = 10;
const MAX_LIMIT: u32 = 100;
/// Most events of context on either side of a result.
const MAX_CONTEXT: u32 = 100;

impl Rooms {
    #[tracing::instrument(skip_all, fields(user = %req.user_id))]
    pub(crate) async fn search_events(&self, req: SearchEventsRequest) -> Result<SearchEventsResponse> {
        for key in &req.keys {
            if !KEYS.contains(&key.as_str()) {
                return Err(Error::invalid_param(format!("unknown search key {key:?}")));
            }
        }
        let token = req.next_batch.as_deref().filter(|t| !t.is_empty()).map(SearchToken::parse).transpose()?;
        if let Some(t) = &token
            && matches!(t.cursor, token::Cursor::Recent { .. }) != req.order_by_recent
        {
            return Err(Error::invalid_param("next_batch belongs to a search in another order"));
        }
        let filter = parse_filter(req.filter_json.as_deref())?;
        let Some(tsquery) = query::tsquery(&req.search_term) else {
            return Ok(SearchEventsResponse::default());
        };
        let limit = filter.limit.map_or(DEFAULT_LIMIT, |l| u64::from(l).clamp(1, u64::from(MAX_LIMIT)) as u32);
        let keys: Vec<&str> =
            if req.keys.is_empty() { KEYS.to_vec() } else { req.keys.iter().map(String::as_str).collect() };

        let client = self.pool.get().await?;
        let readable = Readable::load(&client, &req.user_id, &filter).await?;
        let search = Search {
            tsquery: &tsquery,
            rooms: readable.rooms(),
            keys,
            filter: &filter,
            recent: req.order_by_recent,
            only: token.as_ref().and_then(|t| t.only.as_ref()),
            upper: self.announced_position(),
        };
        let count = search.count(&client).await?;
        let Page { hits, next } =
            search.page(&client, &readable, token.as_ref().map(|t| t.cursor), limit as usize).await?;
        let ids: Vec<&str> = hits.iter().map(|(_, r)| r.event_id.as_str()).collect();
        let highlights = query::highlights(&client, &tsquery, &ids).await?;
        let only = token.as_ref().and_then(|t| t.only.clone());
        let next_batch = next.map(|cursor| SearchToken { cursor, only: only.clone() });

        let viewer = Viewer { user_id: &req.user_id, device_id: &req.device_id };
        let mut groups = Vec::new();
        if req.group_by_room {
            groups.extend(group(&hits, "room_id", |r| &r.room_id, next_batch.as_ref(), Only::Room));
        }
        if req.group_by_sender {
            groups.extend(group(&hits, "sender", |r| &r.sender, next_batch.as_ref(), Only::Sender));
        }
        let mut state = HashMap::new();
        if req.include_state {
            for (_, row) in &hits {
                if !state.contains_key(&row.room_id) {
                    let ceiling = readable.ceilings.get(&row.room_id).copied().flatten();
                    let now = now_ms();
                    let events_json = state_at(&client, &row.room_id, ceiling, None)
                        .await?
                        .iter()
                        .map(|r| r.render(None, Format::Client, now))
                        .collect();
                    state.insert(row.room_id.clone(), EventList { events_json });
                }
            }
        }
        let mut results = Vec::with_capacity(hits.len());
        let ranks: Vec<f32> = hits.iter().map(|(rank, _)| *rank).collect();
        let rows: Vec<EventRow> = hits.into_iter().map(|(_, row)| row).collect();
        let mut contexts = Vec::with_capacity(rows.len());
        for row in &rows {
            contexts.push(match &req.context {
                Some(spec) => Some(self.context(&client, &readable, viewer, row, spec).await?),
                None => None,
            });
        }
        let rendered = serve(&client, &readable, viewer, rows).await?;
        for ((rank, event_json), context) in ranks.into_iter().zip(rendered).zip(contexts) {
            // PostgreSQL ranks are `real`s: shown with the digits they have (0.1, not 0.100000001).
            let rank = rank.to_string().parse().unwrap_or(f64::from(rank));
            results.push(SearchHit { rank, event_json, context });
        }
        Ok(SearchEventsResponse {
            count,
            results,
            next_batch: next_batch.map(|t| t.to_string()),
            highlights,
            state,
            groups,
        })
    }

    /// The events around one result that the user may see, and with `include_profile` the
    /// profiles of their senders as of the result.
    async fn context(
        &self,
        client: &deadpool_postgres::Client,
        readable: &Readable,
        viewer: Viewer<'_>,
        row: &EventRow,
        spec: &SearchContextSpec,
    ) -> Result<SearchContext> {
        let none = ruma::api::client::filter::RoomEventFilter::default();
        let ceiling = readable.ceilings.get(&row.room_id).copied().flatten().unwrap_or(i64::MAX);
        let upper = ceiling.min(self.announced_position());
        let before = Side {
            bound: "pos < $2",
            order: "DESC",
            limit: i64::from(spec.before_limit.min(MAX_CONTEXT)),
            ceiling: None,
        };
        let mut before_rows = context_page(client, &row.room_id, &none, row.pos, before).await?;
        let after = Side {
            bound: "pos > $2 AND pos <= $4",
            order: "ASC",
            limit: i64::from(spec.after_limit.min(MAX_CONTEXT)),
            ceiling: Some(upper),
        };
        let mut after_rows = context_page(client, &row.room_id, &none, row.pos, after).await?;
        let start = before_rows.last().map_or(row.pos - 1, |r| r.pos - 1);
        let end = after_rows.last().map_or(row.pos, |r| r.pos);
        before_rows.retain(|r| readable.sees(r));
        after_rows.retain(|r| readable.sees(r));
        let mut profile_info = HashMap::new();
        if spec.include_profile {
            let senders: Vec<&str> =
                before_rows.iter().chain(&after_rows).chain([row]).map(|r| r.sender.as_str()).collect();
            for member in members_of(client, &row.room_id, &senders, row.pos).await? {
                let content: serde_json::Value = serde_json::from_str(&member.content).unwrap_or_default();
                let profile = SearchProfile {
                    displayname: content["displayname"].as_str().map(str::to_owned),
                    avatar_url: content["avatar_url"].as_str().map(str::to_owned),
                };
                profile_info.insert(member.state_key.unwrap_or_default(), profile);
            }
        }
        Ok(SearchContext {
            start: StreamToken::new(start.max(0)).to_string(),
            end: StreamToken::new(end).to_string(),
            events_before_json: serve(client, readable, viewer, before_rows).await?,
            events_after_json: serve(client, readable, viewer, after_rows).await?,
            profile_info,
        })
    }
}

/// Visible rows as the viewer sees them: erased senders hidden, aggregations bundled.
async fn serve(
    client: &deadpool_postgres::Client,
    readable: &Readable,
    viewer: Viewer<'_>,
    mut rows: Vec<EventRow>,
) -> Result<Vec<String>> {
    erasure::hide_erased(client, |room| readable.histories.get(room), rows.iter_mut()).await?;
    relations::bundle(client, viewer, &mut rows).await?;
    let now = now_ms();
    Ok(rows.iter().map(|r| r.render(Some(viewer), Format::Client, now)).collect())
}

/// The results grouped by one key, in order of each group's first result; a group's
/// `next_batch` continues the search within the group.
fn group(
    hits: &[(f32, EventRow)],
    key: &str,
    value: impl Fn(&EventRow) -> &String,
    next: Option<&SearchToken>,
    only: impl Fn(String) -> Only,
) -> Vec<SearchGroup> {
    let mut groups: Vec<SearchGroup> = Vec::new();
    for (_, row) in hits {
        let v = value(row);
        match groups.iter_mut().find(|g| &g.value == v) {
            Some(g) => g.event_ids.push(row.event_id.clone()),
            None => groups.push(SearchGroup {
                key: key.to_owned(),
                value: v.clone(),
                event_ids: vec![row.event_id.clone()],
                order: groups.len() as u32,
                next_batch: next.map(|t| SearchToken { cursor: t.cursor, only: Some(only(v.clone())) }.to_string()),
            }),
        }
    }
    groups
}
