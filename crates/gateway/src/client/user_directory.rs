//! `POST /user_directory/search`.

use axum::{Json, Router, extract::State};
use ruma::api::client::user_directory::search_users;
use serde_json::{Map, Value, json};
use trellis_proto::rooms::SearchUsersRequest;

use crate::{
    AppState,
    error::ApiResult,
    extract::{Authed, Ruma},
    router::RumaRoutes,
};

pub fn routes() -> Router<AppState> {
    Router::new().ruma::<search_users::v3::Request, _, _>(search_route)
}

/// # `POST /_matrix/client/v3/user_directory/search`
async fn search_route(
    State(s): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<search_users::v3::Request>,
) -> ApiResult<Json<Value>> {
    let limit = u32::try_from(u64::from(req.limit)).unwrap_or(u32::MAX);
    let resp = s
        .services
        .rooms
        .search_users(SearchUsersRequest { requester: auth.user_id, search_term: req.search_term, limit })
        .await?;
    let results: Vec<Value> = resp
        .results
        .into_iter()
        .map(|u| {
            let mut o = Map::new();
            o.insert("user_id".into(), json!(u.user_id));
            if let Some(name) = u.display_name {
                o.insert("display_name".into(), json!(name));
            }
            if let Some(url) = u.avatar_url {
                o.insert("avatar_url".into(), json!(url));
            }
            Value::Object(o)
        })
        .collect();
    Ok(Json(json!({ "results": results, "limited": resp.limited })))
}
