//! Third-party networks (`/thirdparty/*`), answered by the application services declaring
//! each protocol through the rooms service. Synapse's shape: the appservices' JSON as they
//! sent it, merged (ruma's types require keys, such as `field_types` or an instance's
//! `fields`, that appservices in the wild leave out).

use axum::Router;
use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols, get_user_for_protocol,
    get_user_for_user_id,
};
use trellis_proto::rooms::ThirdpartyRequest;

use crate::{AppState, error::ApiResult, extract::Ruma, response::Rendered, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma(get_protocols_route)
        .ruma(get_protocol_route)
        .ruma(get_user_for_protocol_route)
        .ruma(get_location_for_protocol_route)
        .ruma(get_user_for_user_id_route)
        .ruma(get_location_for_room_alias_route)
}

async fn ask<R>(
    s: &AppState,
    kind: &str,
    protocol: String,
    fields: impl IntoIterator<Item = (String, String)>,
) -> ApiResult<Rendered<R>> {
    // A token sent as `?access_token=` is the client's, not a field of the lookup.
    let fields = fields.into_iter().filter(|(k, _)| k != "access_token").collect();
    let req = ThirdpartyRequest { kind: kind.to_owned(), protocol, fields };
    Ok(Rendered::new(s.services.rooms.thirdparty(req).await?.json))
}

/// # `GET /_matrix/client/v3/thirdparty/protocols`
async fn get_protocols_route(
    s: AppState,
    _: Ruma<get_protocols::v3::Request>,
) -> ApiResult<Rendered<get_protocols::v3::Response>> {
    ask(&s, "protocols", String::new(), []).await
}

/// # `GET /_matrix/client/v3/thirdparty/protocol/{protocol}`
async fn get_protocol_route(
    s: AppState,
    req: Ruma<get_protocol::v3::Request>,
) -> ApiResult<Rendered<get_protocol::v3::Response>> {
    ask(&s, "protocol", req.body.protocol, []).await
}

/// # `GET /_matrix/client/v3/thirdparty/user/{protocol}`
async fn get_user_for_protocol_route(
    s: AppState,
    req: Ruma<get_user_for_protocol::v3::Request>,
) -> ApiResult<Rendered<get_user_for_protocol::v3::Response>> {
    ask(&s, "user", req.body.protocol, req.body.fields).await
}

/// # `GET /_matrix/client/v3/thirdparty/location/{protocol}`
async fn get_location_for_protocol_route(
    s: AppState,
    req: Ruma<get_location_for_protocol::v3::Request>,
) -> ApiResult<Rendered<get_location_for_protocol::v3::Response>> {
    ask(&s, "location", req.body.protocol, req.body.fields).await
}

/// # `GET /_matrix/client/v3/thirdparty/user?userid=`
async fn get_user_for_user_id_route(
    s: AppState,
    req: Ruma<get_user_for_user_id::v3::Request>,
) -> ApiResult<Rendered<get_user_for_user_id::v3::Response>> {
    ask(&s, "user_by_id", String::new(), [("userid".to_owned(), req.body.userid.to_string())]).await
}

/// # `GET /_matrix/client/v3/thirdparty/location?alias=`
async fn get_location_for_room_alias_route(
    s: AppState,
    req: Ruma<get_location_for_room_alias::v3::Request>,
) -> ApiResult<Rendered<get_location_for_room_alias::v3::Response>> {
    ask(&s, "location_by_alias", String::new(), [("alias".to_owned(), req.body.alias.to_string())]).await
}
