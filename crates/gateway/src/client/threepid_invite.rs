//! Third-party invites (spec "Third-party invites"): an invite by an address no identity
//! server has bound (`/invite` with `id_server`, `createRoom`'s `invite_3pid`) is left in the
//! room by the rooms service; `/3pid/onbind`, where the identity server reports the address
//! bound, turns it into the user's invite. That endpoint belongs to the server-server API and
//! is served on the client listener, as Synapse serves it.

use axum::{Router, routing::MethodFilter};
use ruma::api::{client::membership::Invite3pid, federation::thirdparty::bind_callback};
use trellis_proto::rooms::{BoundInvite, InviteThreepidRequest, ThreepidBoundRequest};

use crate::{
    AppState,
    error::ApiResult,
    extract::Ruma,
    router::{RumaRoutes, paths_of},
};

pub fn routes() -> Router<AppState> {
    // The spec says PUT; identity servers (Sydent, SyTest's) call it with POST, as Synapse serves it.
    let methods = MethodFilter::PUT.or(MethodFilter::POST);
    Router::new().ruma_with_methods(methods, paths_of::<bind_callback::v1::Request>(), bind_callback_route)
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
