//! Third-party invites (spec "Third-party invites"): an invite by an address no identity
//! server has bound (`/invite` with `id_server`, `createRoom`'s `invite_3pid`) is left in the
//! room by the rooms service; `/3pid/onbind`, where the identity server reports the address
//! bound, turns it into the user's invite. That endpoint belongs to the server-server API and
//! is served on the client listener, as Synapse serves it.

use axum::{
    Router,
    extract::{FromRequest, Request, State},
    http::Method,
    response::{IntoResponse, Response},
    routing::post,
};
use ruma::api::{client::membership::Invite3pid, federation::thirdparty::bind_callback};
use trellis_proto::rooms::{BoundInvite, InviteThreepidRequest, ThreepidBoundRequest};

use crate::{
    AppState,
    error::ApiResult,
    extract::Ruma,
    response::Reply,
    router::{RumaRoutes, paths_of},
};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new().ruma(bind_callback_route);
    for path in paths_of::<bind_callback::v1::Request>() {
        router = router.route(&path, post(bind_callback_post_route));
    }
    router
}

/// Leaves an invite for an address nobody has bound in the room (the caller looked it up).
pub(crate) async fn invite_unbound(s: &AppState, sender: &str, room_id: &str, threepid: &Invite3pid) -> ApiResult<()> {
    let invite = InviteThreepidRequest {
        sender: sender.to_owned(),
        room_id: room_id.to_owned(),
        id_server: threepid.id_server.clone(),
        id_access_token: threepid.id_access_token.clone(),
        medium: threepid.medium.to_string(),
        address: threepid.address.clone(),
    };
    s.services.rooms.invite_threepid(invite).await?;
    Ok(())
}

/// # `PUT /_matrix/federation/v1/3pid/onbind` (no auth: the identity server's signatures decide)
async fn bind_callback_route(
    s: AppState,
    req: Ruma<bind_callback::v1::Request>,
) -> ApiResult<bind_callback::v1::Response> {
    let invites = req
        .body
        .invites
        .into_iter()
        .map(|invite| BoundInvite {
            room_id: invite.room_id.to_string(),
            sender: invite.sender.to_string(),
            mxid: invite.mxid.to_string(),
            signed_json: invite.signed.json().get().to_owned(),
        })
        .collect();
    s.services.rooms.threepid_bound(ThreepidBoundRequest { invites }).await?;
    Ok(bind_callback::v1::Response::new())
}

/// `POST /_matrix/federation/v1/3pid/onbind`: the spec says PUT, but identity servers
/// (Sydent, SyTest's) call it with POST, which Synapse serves; it is read as the PUT ruma's
/// request type expects.
async fn bind_callback_post_route(State(s): State<AppState>, mut req: Request) -> Response {
    *req.method_mut() = Method::PUT;
    let answer = match Ruma::<bind_callback::v1::Request>::from_request(req, &s).await {
        Ok(req) => bind_callback_route(s, req).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(reply) => Reply::<bind_callback::v1::Response>::into_answer(reply),
        Err(e) => e.into_response(),
    }
}
