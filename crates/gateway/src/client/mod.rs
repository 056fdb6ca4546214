//! Client-server API endpoints, one module per spec area.

mod account;
mod account_data;
mod account_manage;
mod devices;
mod directory;
mod discovery;
mod ephemeral;
mod events;
mod key_backup;
mod keys;
mod legacy;
mod media;
mod media_serve;
mod membership;
mod openid;
mod presence;
mod profile;
mod push;
mod relations;
mod reporting;
mod rooms;
mod search;
mod sliding_sync;
mod spaces;
mod sync;
mod to_device;
mod user_directory;
mod voip;

use axum::{
    Router,
    extract::RawPathParams,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde_json::value::RawValue;
use trellis_core::Error;

use crate::{AppState, error::ApiError};

pub(crate) use discovery::support;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(discovery::routes())
        .merge(account::routes())
        .merge(profile::routes())
        .merge(rooms::routes())
        .merge(membership::routes())
        .merge(directory::routes())
        .merge(events::routes())
        .merge(relations::routes())
        .merge(sync::routes())
        .merge(sliding_sync::routes())
        .merge(ephemeral::routes())
        .merge(account_data::routes())
        .merge(presence::routes())
        .merge(push::routes())
        .merge(legacy::routes())
        .merge(media::routes())
        .merge(voip::routes())
        .merge(user_directory::routes())
        .merge(devices::routes())
        .merge(account_manage::routes())
        .merge(key_backup::routes())
        .merge(keys::routes())
        .merge(to_device::routes())
        .merge(search::routes())
        .merge(spaces::routes())
        .merge(reporting::routes())
        .merge(openid::routes())
}

/// A named path parameter (already percent-decoded).
fn param(params: &RawPathParams, name: &str) -> Result<String, ApiError> {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| ApiError(Error::invalid_param(format!("missing path parameter {name}"))))
}

/// Query parameters into `T`; a malformed query is `M_INVALID_PARAM`.
fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|e| ApiError(Error::invalid_param(format!("invalid query parameter: {e}"))))
}

/// An already-rendered JSON document (events, a sync body) as a response.
pub struct RawJson(pub String);

impl IntoResponse for RawJson {
    fn into_response(self) -> Response {
        let mut r = self.0.into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }
}

/// Embeds rendered events in a `serde_json` response without parsing them again.
fn raw_events(events: Vec<String>) -> Result<Vec<Box<RawValue>>, ApiError> {
    events.into_iter().map(|e| RawValue::from_string(e).map_err(ApiError::from)).collect()
}

/// An identifier a service sent; one that does not parse is our fault, not the client's.
fn stored_id<T: TryFrom<String, Error = ruma::IdParseError>>(s: String) -> Result<T, ApiError> {
    T::try_from(s).map_err(|e| ApiError(Error::internal(format!("stored identifier: {e}"))))
}
