//! End-to-end encryption keys: upload, query and claim keys, cross-signing keys and
//! signatures, and device-list changes. Each handler takes the endpoint's ruma request and
//! calls the keys service's typed operation; the signed objects in it (device keys, one-time
//! and cross-signing keys, signed keys) go on as the JSON the client sent, which the service
//! reads with ruma's types and whose signatures it verifies.

use std::collections::BTreeMap;

use axum::Router;
use ruma::{
    OneTimeKeyAlgorithm, OwnedDeviceId, UInt,
    api::{
        Metadata, OutgoingResponse, OutgoingResponseExt,
        client::keys::{claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys},
    },
    serde::Raw,
};
use serde::Serialize;
use serde_json::{Map, Value, value::RawValue};
use trellis_core::Error;
use trellis_proto::keys::{
    AlgorithmByDevice, ClaimKeysRequest, DeviceIds, KeyChangesRequest, QueryKeysRequest, SignedKeys, UploadKeysRequest,
    UploadSignaturesRequest, UploadSigningKeysRequest,
};

use super::stored_id;
use crate::{
    AppState,
    adjust::{Adjusted, Adjustment, Uia},
    error::ApiResult,
    extract::Ruma,
    response::Rendered,
    router::{RumaRoutes, also_under, paths_of},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .ruma_on(every_prefix::<Adjusted<upload_keys::v3::Request, UploadCompat>>(), upload_keys_route)
        .ruma_on(every_prefix::<Adjusted<get_keys::v3::Request, QueryCompat>>(), get_keys_route)
        .ruma_on(every_prefix::<claim_keys::v3::Request>(), claim_keys_route)
        .ruma_on(every_prefix::<Uia<upload_signing_keys::v3::Request>>(), upload_signing_keys_route)
        .ruma_on(every_prefix::<upload_signatures::v3::Request>(), upload_signatures_route)
        .ruma_on(every_prefix::<get_key_changes::v3::Request>(), get_key_changes_route)
}

/// The endpoint's ruma paths, plus the `r0` and `unstable` prefixes ruma does not list
/// (clients of every age use them for the keys API, and Synapse serves all three).
fn every_prefix<T: Metadata>() -> Vec<String> {
    also_under(paths_of::<T>(), "/_matrix/client/", &["r0", "unstable"])
}

/// `/keys/upload` bodies as Synapse takes them: fallback keys under MSC2732's unstable name
/// (`org.matrix.msc2732.fallback_keys`, which older Element and matrix-js-sdk releases send)
/// count when the stable field is absent, and a `null` key map is an absent one (ruma's type
/// wants a map).
pub struct UploadCompat;

impl Adjustment for UploadCompat {
    type Kept = ();

    fn adjust(body: &mut Map<String, Value>) -> serde_json::Result<()> {
        let unstable = body.remove("org.matrix.msc2732.fallback_keys");
        for field in ["one_time_keys", "fallback_keys"] {
            if body.get(field).is_some_and(Value::is_null) {
                body.remove(field);
            }
        }
        if let Some(keys) = unstable.filter(|k| !k.is_null())
            && !body.contains_key("fallback_keys")
        {
            body.insert("fallback_keys".into(), keys);
        }
        Ok(())
    }
}

/// `/keys/query` bodies as Synapse takes them: a `null` device list asks for every device,
/// as an empty one does (ruma's type wants a list).
pub struct QueryCompat;

impl Adjustment for QueryCompat {
    type Kept = ();

    fn adjust(body: &mut Map<String, Value>) -> serde_json::Result<()> {
        if let Some(Value::Object(users)) = body.get_mut("device_keys") {
            for devices in users.values_mut().filter(|d| d.is_null()) {
                *devices = Value::Array(Vec::new());
            }
        }
        Ok(())
    }
}

/// A key object's JSON as the client sent it.
fn sent<T>(raw: &Raw<T>) -> String {
    raw.json().get().to_owned()
}

/// Key ID → each key's JSON as the client sent it.
fn each_sent<K: ToString, T>(keys: BTreeMap<K, Raw<T>>) -> BTreeMap<String, String> {
    keys.iter().map(|(id, key)| (id.to_string(), sent(key))).collect()
}

/// A key object the keys service rendered, for ruma's response (internal if it is not JSON).
fn rendered<T>(json: String) -> ApiResult<Raw<T>> {
    Ok(Raw::from_json(RawValue::from_string(json)?))
}

/// A ruma response with the empty objects ruma's type leaves out put back: Synapse always
/// sends `failures` (clients and SyTest read it) and the key maps of `/keys/query`, and so
/// did Trellis before its contract was typed.
fn with_empty<R: OutgoingResponse>(response: R, fields: &[&str]) -> ApiResult<Rendered<R>> {
    let http = response.try_into_http_response::<Vec<u8>>().map_err(|e| Error::internal(e.to_string()))?;
    let mut body: Map<String, Value> = serde_json::from_slice(http.body())?;
    for field in fields {
        body.entry(*field).or_insert_with(|| Value::Object(Map::new()));
    }
    Rendered::shaped(&body)
}

/// # `POST /_matrix/client/v3/keys/upload`
async fn upload_keys_route(
    s: AppState,
    req: Ruma<Adjusted<upload_keys::v3::Request, UploadCompat>>,
) -> ApiResult<upload_keys::v3::Response> {
    let body = req.body.request;
    let upload = UploadKeysRequest {
        user_id: req.user.user_id,
        device_id: req.user.device_id,
        device_keys: body.device_keys.as_ref().map(sent),
        one_time_keys: each_sent(body.one_time_keys),
        fallback_keys: each_sent(body.fallback_keys),
    };
    let counts = s.services.keys.upload_keys(upload).await?.one_time_key_counts;
    let counts = counts
        .into_iter()
        .map(|(alg, n)| Ok((OneTimeKeyAlgorithm::from(alg), UInt::try_from(n).map_err(Error::internal)?)))
        .collect::<ApiResult<_>>()?;
    Ok(upload_keys::v3::Response::new(counts))
}

/// # `POST /_matrix/client/v3/keys/query`
async fn get_keys_route(
    s: AppState,
    req: Ruma<Adjusted<get_keys::v3::Request, QueryCompat>>,
) -> ApiResult<Rendered<get_keys::v3::Response>> {
    let device_keys = req.body.request.device_keys.into_iter().map(|(user, devices)| {
        (user.to_string(), DeviceIds { device_ids: devices.into_iter().map(String::from).collect() })
    });
    let query = QueryKeysRequest { user_id: req.user.user_id, device_keys: device_keys.collect() };
    let found = s.services.keys.query_keys(query).await?;
    let mut out = get_keys::v3::Response::new();
    for (user, keys) in found.device_keys {
        let devices = keys.devices.into_iter().map(|(device, json)| Ok((OwnedDeviceId::from(device), rendered(json)?)));
        out.device_keys.insert(stored_id(user)?, devices.collect::<ApiResult<_>>()?);
    }
    for (to, from) in [
        (&mut out.master_keys, found.master_keys),
        (&mut out.self_signing_keys, found.self_signing_keys),
        (&mut out.user_signing_keys, found.user_signing_keys),
    ] {
        for (user, json) in from {
            to.insert(stored_id(user)?, rendered(json)?);
        }
    }
    with_empty(out, &["failures", "device_keys", "master_keys", "self_signing_keys", "user_signing_keys"])
}

/// # `POST /_matrix/client/v3/keys/claim`
async fn claim_keys_route(
    s: AppState,
    req: Ruma<claim_keys::v3::Request>,
) -> ApiResult<Rendered<claim_keys::v3::Response>> {
    let asked = req.body.one_time_keys.into_iter().map(|(user, devices)| {
        let devices = devices.into_iter().map(|(device, alg)| (device.to_string(), alg.as_str().to_owned())).collect();
        (user.to_string(), AlgorithmByDevice { devices })
    });
    let claim = ClaimKeysRequest { user_id: req.user.user_id, one_time_keys: asked.collect() };
    let claimed = s.services.keys.claim_keys(claim).await?;
    let mut keys = BTreeMap::new();
    for (user, devices) in claimed.one_time_keys {
        let mut of_user = BTreeMap::new();
        for (device, key) in devices.devices {
            let one = BTreeMap::from([(stored_id(key.key_id)?, rendered(key.key)?)]);
            of_user.insert(OwnedDeviceId::from(device), one);
        }
        keys.insert(stored_id(user)?, of_user);
    }
    with_empty(claim_keys::v3::Response::new(keys), &["failures"])
}

/// # `POST /_matrix/client/v3/keys/device_signing/upload`
async fn upload_signing_keys_route(
    s: AppState,
    req: Ruma<Uia<upload_signing_keys::v3::Request>>,
) -> ApiResult<upload_signing_keys::v3::Response> {
    let auth_json = req.body.auth_json();
    let body = req.body.request;
    let upload = UploadSigningKeysRequest {
        user_id: req.user.user_id,
        master_key: body.master_key.as_ref().map(sent),
        self_signing_key: body.self_signing_key.as_ref().map(sent),
        user_signing_key: body.user_signing_key.as_ref().map(sent),
        auth_json,
    };
    s.services.keys.upload_signing_keys(upload).await?;
    Ok(upload_signing_keys::v3::Response::new())
}

/// # `POST /_matrix/client/v3/keys/signatures/upload`
///
/// Answered in Synapse's shape: each failure carries its HTTP `status` beside `errcode` and
/// `error`, which ruma's `Failure` has no field for.
async fn upload_signatures_route(
    s: AppState,
    req: Ruma<upload_signatures::v3::Request>,
) -> ApiResult<Rendered<upload_signatures::v3::Response>> {
    #[derive(Serialize)]
    struct Failure {
        status: u32,
        errcode: String,
        error: String,
    }
    let signed = req.body.signed_keys.into_iter().map(|(user, keys)| {
        let keys = keys.iter().map(|(id, key)| (id.to_owned(), key.get().to_owned())).collect();
        (user.to_string(), SignedKeys { keys })
    });
    let upload = UploadSignaturesRequest { user_id: req.user.user_id, signed_keys: signed.collect() };
    let out = s.services.keys.upload_signatures(upload).await?;
    let failures: BTreeMap<String, BTreeMap<String, Failure>> = out
        .failures
        .into_iter()
        .map(|(user, of_user)| {
            let keys = of_user
                .keys
                .into_iter()
                .map(|(key, f)| (key, Failure { status: f.status, errcode: f.errcode, error: f.error }));
            (user, keys.collect())
        })
        .collect();
    Rendered::shaped(&serde_json::json!({ "failures": failures }))
}

/// # `GET /_matrix/client/v3/keys/changes`
async fn get_key_changes_route(
    s: AppState,
    req: Ruma<get_key_changes::v3::Request>,
) -> ApiResult<get_key_changes::v3::Response> {
    let ask = KeyChangesRequest { user_id: req.user.user_id, from: req.body.from, to: req.body.to };
    let changes = s.services.keys.key_changes(ask).await?;
    let ids = |list: Vec<String>| list.into_iter().map(stored_id).collect::<ApiResult<Vec<_>>>();
    Ok(get_key_changes::v3::Response::new(ids(changes.changed)?, ids(changes.left)?))
}
