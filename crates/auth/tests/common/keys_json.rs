//! The keys service's typed requests from the JSON bodies clients send (each signed object as
//! its own JSON, as the gateway passes it on), and its answers as the JSON clients see, so
//! that the tests read like the spec's examples.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use trellis_proto::keys::*;

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

/// An object's entries, each value as its own JSON.
fn each_json(v: Option<&Value>) -> BTreeMap<String, String> {
    let entries = v.and_then(Value::as_object).into_iter().flatten();
    entries.map(|(k, v)| (k.clone(), v.to_string())).collect()
}

fn parse(json: &str) -> Value {
    serde_json::from_str(json).expect("the service answers JSON")
}

/// `POST /keys/upload` by `user` on `device`.
pub fn upload(user: &str, device: &str, body: Value) -> UploadKeysRequest {
    UploadKeysRequest {
        user_id: user.into(),
        device_id: device.into(),
        device_keys: field(&body, "device_keys").map(Value::to_string),
        one_time_keys: each_json(field(&body, "one_time_keys")),
        fallback_keys: each_json(field(&body, "fallback_keys")),
    }
}

/// `POST /keys/query` by `user`.
pub fn query(user: &str, body: Value) -> QueryKeysRequest {
    let asked = body["device_keys"].as_object().expect("device_keys").iter().map(|(user, devices)| {
        let device_ids = devices.as_array().into_iter().flatten().map(|d| d.as_str().unwrap().to_owned()).collect();
        (user.clone(), DeviceIds { device_ids })
    });
    QueryKeysRequest { user_id: user.into(), device_keys: asked.collect() }
}

/// `POST /keys/claim` by `user`.
pub fn claim(user: &str, body: Value) -> ClaimKeysRequest {
    let asked = body["one_time_keys"].as_object().expect("one_time_keys").iter().map(|(user, devices)| {
        let devices = devices.as_object().unwrap().iter().map(|(d, alg)| (d.clone(), alg.as_str().unwrap().into()));
        (user.clone(), AlgorithmByDevice { devices: devices.collect() })
    });
    ClaimKeysRequest { user_id: user.into(), one_time_keys: asked.collect() }
}

/// `POST /keys/device_signing/upload` by `user`.
pub fn signing_keys(user: &str, body: Value) -> UploadSigningKeysRequest {
    let key = |name: &str| field(&body, name).map(Value::to_string);
    UploadSigningKeysRequest {
        user_id: user.into(),
        master_key: key("master_key"),
        self_signing_key: key("self_signing_key"),
        user_signing_key: key("user_signing_key"),
        auth_json: key("auth").unwrap_or_default(),
    }
}

/// `POST /keys/signatures/upload` by `user`.
pub fn signatures(user: &str, body: Value) -> UploadSignaturesRequest {
    let signed = body
        .as_object()
        .expect("an object")
        .iter()
        .map(|(user, keys)| (user.clone(), SignedKeys { keys: each_json(Some(keys)) }));
    UploadSignaturesRequest { user_id: user.into(), signed_keys: signed.collect() }
}

/// A `/keys/query` answer as clients see it.
pub fn queried(found: QueryKeysResponse) -> Value {
    let objects = |m: BTreeMap<String, String>| -> Map<String, Value> {
        m.into_iter().map(|(k, json)| (k, parse(&json))).collect()
    };
    let devices: Map<String, Value> =
        found.device_keys.into_iter().map(|(user, d)| (user, Value::Object(objects(d.devices)))).collect();
    json!({
        "device_keys": devices,
        "master_keys": objects(found.master_keys),
        "self_signing_keys": objects(found.self_signing_keys),
        "user_signing_keys": objects(found.user_signing_keys),
        "failures": {},
    })
}

/// A `/keys/claim` answer as clients see it.
pub fn claimed(claimed: ClaimKeysResponse) -> Value {
    let users = claimed.one_time_keys.into_iter().map(|(user, devices)| {
        let devices = devices.devices.into_iter().map(|(d, key)| (d, json!({ key.key_id: parse(&key.key) })));
        (user, Value::Object(devices.collect()))
    });
    json!({ "one_time_keys": users.collect::<Map<String, Value>>(), "failures": {} })
}

/// A `/keys/signatures/upload` answer as clients see it.
pub fn signed(out: UploadSignaturesResponse) -> Value {
    let users = out.failures.into_iter().map(|(user, keys)| {
        let keys = keys
            .keys
            .into_iter()
            .map(|(key, f)| (key, json!({"errcode": f.errcode, "error": f.error, "status": f.status})));
        (user, Value::Object(keys.collect()))
    });
    json!({ "failures": users.collect::<Map<String, Value>>() })
}
