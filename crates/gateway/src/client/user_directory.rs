//! `POST /user_directory/search`.

use axum::Router;
use ruma::api::client::user_directory::search_users::{self, v3::User};
use trellis_proto::rooms::SearchUsersRequest;

use super::stored_id;
use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(search_users_route)
}

/// # `POST /_matrix/client/v3/user_directory/search`
async fn search_users_route(
    s: AppState,
    req: Ruma<search_users::v3::Request>,
) -> ApiResult<search_users::v3::Response> {
    let limit = u32::try_from(u64::from(req.body.limit)).unwrap_or(u32::MAX);
    let ask = SearchUsersRequest { requester: req.user.user_id, search_term: req.body.search_term, limit };
    let resp = s.services.rooms.search_users(ask).await?;
    let results = resp
        .results
        .into_iter()
        .map(|u| {
            let mut user = User::new(stored_id(u.user_id)?);
            user.display_name = u.display_name;
            user.avatar_url = u.avatar_url.map(Into::into);
            Ok(user)
        })
        .collect::<ApiResult<_>>()?;
    Ok(search_users::v3::Response::new(results, resp.limited))
}
