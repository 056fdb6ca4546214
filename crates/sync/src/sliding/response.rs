//! The body of a sliding sync response, as both paths put it together.

use std::collections::BTreeMap;

use ruma::api::client::sync::sync_events::v5::response::{Extensions, List as ListResponse, Room};
use serde::Serialize;

/// The response body: the endpoint's ruma types, rendered once here.
#[derive(Serialize)]
pub(crate) struct Body {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_id: Option<String>,
    pub pos: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub lists: BTreeMap<String, ListResponse>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rooms: BTreeMap<ruma::OwnedRoomId, Room>,
    #[serde(skip_serializing_if = "Extensions::is_empty")]
    pub extensions: Extensions,
}

/// The lists of a response: each list's count (the simplified protocol sends no operations).
pub(crate) fn lists(counts: &BTreeMap<String, u64>) -> BTreeMap<String, ListResponse> {
    let list = |count: u64| {
        let mut l = ListResponse::default();
        l.count = ruma::UInt::new_saturating(count);
        l
    };
    counts.iter().map(|(name, count)| (name.clone(), list(*count))).collect()
}
