//! Admin API handlers for media: quarantine (one media, a room's, a user's) and release,
//! protection from quarantine,
//! deletion (one media, a page of a user's), the lists of a room's and a user's media, and
//! the remote-media cache purge. The media service owns the rules and its tables; a room's
//! media comes from the rooms service, which owns the events naming it.

use axum::Router;
use ruma::OwnedMxcUri;
use trellis_core::Error;
use trellis_proto::{
    media::{
        AdminDeleteMediaRequest, AdminListMediaRequest, AdminMediaIds, AdminMediaPage, AdminMediaRef,
        AdminMediaSelection, AdminProtectMediaRequest, AdminQuarantineRequest, admin_media_selection::Which,
    },
    rooms::RoomMediaRequest,
};

use super::{DEFAULT_LIMIT, ServerAdmin, backwards, existing_user, media_api as api, next_from};
use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(quarantine_media_route)
        .ruma(unquarantine_media_route)
        .ruma(protect_media_route)
        .ruma(unprotect_media_route)
        .ruma(delete_media_route)
        .ruma_on(
            vec![
                "/_synapse/admin/v1/room/{room_id}/media/quarantine".to_owned(),
                // Synapse's older path for the same.
                "/_synapse/admin/v1/quarantine_media/{room_id}".to_owned(),
            ],
            quarantine_room_media_route,
        )
        .ruma(room_media_route)
        .ruma(quarantine_user_media_route)
        .ruma(list_user_media_route)
        .ruma(delete_user_media_route)
        .ruma(purge_media_cache_route)
}

fn one(server_name: &ruma::ServerName, media_id: String) -> Option<AdminMediaSelection> {
    let r = AdminMediaRef { server_name: server_name.to_string(), media_id };
    Some(AdminMediaSelection { which: Some(Which::One(r)) })
}

async fn quarantine(s: &AppState, admin: String, selection: Option<AdminMediaSelection>, on: bool) -> ApiResult<u64> {
    let req = AdminQuarantineRequest { admin, selection, quarantine: on };
    Ok(s.services.media.admin_quarantine(req).await?.count)
}

/// # `POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}`
async fn quarantine_media_route(
    s: AppState,
    req: Ruma<api::quarantine_media::Request, ServerAdmin>,
) -> ApiResult<api::quarantine_media::Response> {
    quarantine(&s, req.user.user_id, one(&req.body.server_name, req.body.media_id), true).await?;
    Ok(api::quarantine_media::Response {})
}

/// # `POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}`
async fn unquarantine_media_route(
    s: AppState,
    req: Ruma<api::unquarantine_media::Request, ServerAdmin>,
) -> ApiResult<api::unquarantine_media::Response> {
    quarantine(&s, req.user.user_id, one(&req.body.server_name, req.body.media_id), false).await?;
    Ok(api::unquarantine_media::Response {})
}

/// Protects this server's `media_id` from quarantine, or lifts it.
async fn protect(s: &AppState, admin: String, media_id: String, protect: bool) -> ApiResult<()> {
    let media = Some(AdminMediaRef { server_name: s.settings.server_name.clone(), media_id });
    s.services.media.admin_protect_media(AdminProtectMediaRequest { admin, media, protect }).await?;
    Ok(())
}

/// # `POST /_synapse/admin/v1/media/protect/{mediaId}`
async fn protect_media_route(
    s: AppState,
    req: Ruma<api::protect_media::Request, ServerAdmin>,
) -> ApiResult<api::protect_media::Response> {
    protect(&s, req.user.user_id, req.body.media_id, true).await?;
    Ok(api::protect_media::Response {})
}

/// # `POST /_synapse/admin/v1/media/unprotect/{mediaId}`
async fn unprotect_media_route(
    s: AppState,
    req: Ruma<api::unprotect_media::Request, ServerAdmin>,
) -> ApiResult<api::unprotect_media::Response> {
    protect(&s, req.user.user_id, req.body.media_id, false).await?;
    Ok(api::unprotect_media::Response {})
}

/// # `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`
async fn delete_media_route(
    s: AppState,
    req: Ruma<api::delete_media::Request, ServerAdmin>,
) -> ApiResult<api::delete_media::Response> {
    let selection = one(&req.body.server_name, req.body.media_id);
    let deleted = s.services.media.admin_delete_media(AdminDeleteMediaRequest { admin: req.user.user_id, selection });
    let deleted_media = deleted.await?.media_ids;
    Ok(api::delete_media::Response { total: deleted_media.len(), deleted_media })
}

/// # `POST /_synapse/admin/v1/room/{roomId}/media/quarantine`
///
/// This server's media the room's events show; other servers' are not cached here.
async fn quarantine_room_media_route(
    s: AppState,
    req: Ruma<api::quarantine_room_media::Request, ServerAdmin>,
) -> ApiResult<api::quarantine_room_media::Response> {
    let found = s.services.rooms.room_media(RoomMediaRequest { room_id: req.body.room_id.to_string() }).await?;
    let media_ids = found
        .local
        .into_iter()
        .filter_map(|uri| OwnedMxcUri::from(uri).parts().ok().map(|(_, id)| id.to_owned()))
        .collect();
    let selection = Some(AdminMediaSelection { which: Some(Which::Media(AdminMediaIds { media_ids })) });
    let num_quarantined = quarantine(&s, req.user.user_id, selection, true).await?;
    Ok(api::quarantine_room_media::Response { num_quarantined })
}

/// # `GET /_synapse/admin/v1/room/{roomId}/media`
async fn room_media_route(
    s: AppState,
    req: Ruma<api::room_media::Request, ServerAdmin>,
) -> ApiResult<api::room_media::Response> {
    let found = s.services.rooms.room_media(RoomMediaRequest { room_id: req.body.room_id.to_string() }).await?;
    Ok(api::room_media::Response { local: found.local, remote: found.remote })
}

/// # `POST /_synapse/admin/v1/user/{userId}/media/quarantine`
async fn quarantine_user_media_route(
    s: AppState,
    req: Ruma<api::quarantine_user_media::Request, ServerAdmin>,
) -> ApiResult<api::quarantine_user_media::Response> {
    let user_id = existing_user(&s, &req.body.user_id).await?;
    let selection = Some(AdminMediaSelection { which: Some(Which::UserId(user_id)) });
    let num_quarantined = quarantine(&s, req.user.user_id, selection, true).await?;
    Ok(api::quarantine_user_media::Response { num_quarantined })
}

/// The service's page for Synapse's query parameters.
fn page(
    user_id: String,
    from: Option<i64>,
    limit: Option<i64>,
    order_by: Option<String>,
    dir: Option<String>,
) -> ApiResult<AdminMediaPage> {
    let backwards = backwards(dir.as_deref(), false)?;
    let limit =
        i32::try_from(limit.unwrap_or(DEFAULT_LIMIT)).map_err(|_| Error::invalid_param("limit is out of range"))?;
    Ok(AdminMediaPage { user_id, from: from.unwrap_or(0), limit, order_by: order_by.unwrap_or_default(), backwards })
}

/// # `GET /_synapse/admin/v1/users/{userId}/media`
async fn list_user_media_route(
    s: AppState,
    req: Ruma<api::list_user_media::Request, ServerAdmin>,
) -> ApiResult<api::list_user_media::Response> {
    let q = req.body;
    let page = page(existing_user(&s, &q.user_id).await?, q.from, q.limit, q.order_by, q.dir)?;
    let (from, limit) = (page.from, i64::from(page.limit));
    let found = s.services.media.admin_list_media(AdminListMediaRequest { page: Some(page) }).await?;
    let next_token = next_from(from, limit, found.total);
    let media = found
        .media
        .into_iter()
        .map(|m| api::ListedMedia {
            media_id: m.media_id,
            media_type: m.media_type,
            media_length: m.media_length,
            upload_name: m.upload_name,
            created_ts: m.created_ts,
            last_access_ts: m.created_ts,
            quarantined_by: m.quarantined_by,
            safe_from_quarantine: m.safe_from_quarantine,
        })
        .collect();
    Ok(api::list_user_media::Response { media, next_token, total: found.total })
}

/// # `DELETE /_synapse/admin/v1/users/{userId}/media`: the page the query names.
async fn delete_user_media_route(
    s: AppState,
    req: Ruma<api::delete_user_media::Request, ServerAdmin>,
) -> ApiResult<api::delete_user_media::Response> {
    let q = req.body;
    let page = page(existing_user(&s, &q.user_id).await?, q.from, q.limit, q.order_by, q.dir)?;
    let selection = Some(AdminMediaSelection { which: Some(Which::Page(page)) });
    let deleted = s.services.media.admin_delete_media(AdminDeleteMediaRequest { admin: req.user.user_id, selection });
    let deleted_media = deleted.await?.media_ids;
    Ok(api::delete_user_media::Response { total: deleted_media.len(), deleted_media })
}

/// # `POST /_synapse/admin/v1/purge_media_cache`
///
/// Remote media is not fetched over federation yet, so there is no cache to purge.
async fn purge_media_cache_route(
    _: AppState,
    req: Ruma<api::purge_media_cache::Request, ServerAdmin>,
) -> ApiResult<api::purge_media_cache::Response> {
    if req.body.before_ts < 0 {
        return Err(Error::invalid_param("before_ts must be a positive integer").into());
    }
    Ok(api::purge_media_cache::Response { deleted: 0 })
}
