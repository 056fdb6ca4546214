//! Client-server API endpoints, one module per spec area.

mod account;
mod account_data;
mod account_manage;
mod appservice;
mod devices;
mod directory;
mod discovery;
mod ephemeral;
mod events;
mod fallback;
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
mod session;
mod sliding_sync;
mod spaces;
mod sync;
mod thirdparty;
mod threepid;
mod threepid_invite;
mod to_device;
mod user_directory;
mod voip;

use axum::{Router, extract::RawPathParams};
use ruma::{UInt, serde::Raw};
use serde_json::value::RawValue;
use trellis_core::Error;

use crate::{AppState, error::ApiError};

pub(crate) use devices::{devices_removed, forget_devices, these};
pub(crate) use discovery::support;
pub(crate) use openid::whois_response;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(discovery::routes())
        .merge(account::routes())
        .merge(fallback::routes())
        .merge(session::routes())
        .merge(rooms::routes())
        .merge(membership::routes())
        .merge(devices::routes())
        .merge(account_manage::routes())
        .merge(sync::routes())
        .merge(thirdparty::routes())
        .merge(threepid::routes())
        .merge(threepid_invite::routes())
        .merge(appservice::routes())
        .merge(sliding_sync::routes())
        .merge(push::routes())
        .merge(media::routes())
        .merge(legacy::routes())
        .merge(keys::routes())
        .merge(key_backup::routes())
        .merge(ephemeral::routes())
        .merge(account_data::routes())
        .merge(directory::routes())
        .merge(events::routes())
        .merge(openid::routes())
        .merge(presence::routes())
        .merge(profile::routes())
        .merge(relations::routes())
        .merge(reporting::routes())
        .merge(search::routes())
        .merge(spaces::routes())
        .merge(to_device::routes())
        .merge(user_directory::routes())
        .merge(voip::routes())
}

/// A named path parameter (already percent-decoded), for the compatibility routes ruma has
/// no type for.
fn param(params: &RawPathParams, name: &str) -> Result<String, ApiError> {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| ApiError(Error::invalid_param(format!("missing path parameter {name}"))))
}

/// Query parameters into `T`, for the compatibility routes; a malformed query is
/// `M_INVALID_PARAM`.
fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|e| ApiError(Error::invalid_param(format!("invalid query parameter: {e}"))))
}

/// Rendered JSON a service sent (an event, a list of them) as ruma's raw type, embedded in
/// the answer without being parsed again.
fn raw<T>(json: String) -> Result<Raw<T>, ApiError> {
    Ok(Raw::from_json(RawValue::from_string(json)?))
}

/// [`raw`] for each of a list.
pub(crate) fn raw_list<T>(events: Vec<String>) -> Result<Vec<Raw<T>>, ApiError> {
    events.into_iter().map(raw).collect()
}

/// A count or limit from a request as the `u32` the service contracts carry, saturating.
pub(crate) fn small(n: impl Into<u64>) -> u32 {
    u32::try_from(n.into()).unwrap_or(u32::MAX)
}

/// A count a service sent as ruma's `UInt`, saturating (at `UInt::MAX`, for one out of range).
fn uint(n: impl TryInto<UInt>) -> UInt {
    n.try_into().unwrap_or(UInt::MAX)
}

/// An event ID like the ones this server makes, for an event that was never sent (the answer
/// to a shadow-banned user): nobody can tell it from a real one by its look.
pub(crate) fn fake_event_id() -> Result<ruma::OwnedEventId, ApiError> {
    stored_id(format!("${}", trellis_core::ids::random_string(43)))
}

/// An identifier a service sent; one that does not parse is our fault, not the client's.
pub(crate) fn stored_id<T: TryFrom<String, Error = ruma::IdParseError>>(s: String) -> Result<T, ApiError> {
    T::try_from(s).map_err(|e| ApiError(Error::internal(format!("stored identifier: {e}"))))
}
