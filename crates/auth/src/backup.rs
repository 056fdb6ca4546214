//! Server-side key backup (the spec's "Server-side key backups"): versions with their
//! `auth_data`, and the backed-up megolm sessions with the rule for which copy is kept.
//! `etag` changes whenever a version's keys change; `count` is how many it holds.

use deadpool_postgres::GenericClient;
use serde_json::{Map, Value, json};
use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::auth::{
    AuthAck, BackupVersion, CreateBackupVersionRequest, GetBackupVersionRequest, PutRoomKeysRequest, RoomKeysCount,
    RoomKeysJson, RoomKeysRequest, UpdateBackupVersionRequest,
};

use crate::{
    backup_store::{self as store, KeyRow, VersionRow},
    service::Auth,
};

/// Whether `new` should replace the stored `old` (spec: a verified key beats an unverified
/// one, then the lower `first_message_index`, then the lower `forwarded_count`; a tie keeps
/// the stored key).
pub fn should_replace(old: &KeyRow, new: &KeyRow) -> bool {
    if old.is_verified != new.is_verified {
        return new.is_verified;
    }
    if old.first_message_index != new.first_message_index {
        return new.first_message_index < old.first_message_index;
    }
    new.forwarded_count < old.forwarded_count
}

/// Reads one KeyBackupData object.
pub fn key_from_json(value: &Value) -> Result<KeyRow> {
    let bad = |m: &str| Error::bad_json(m.to_owned());
    let obj = value.as_object().ok_or_else(|| bad("key backup data must be an object"))?;
    let int = |k: &str| {
        obj.get(k).and_then(Value::as_i64).filter(|n| *n >= 0).ok_or_else(|| bad(&format!("{k} must be an integer")))
    };
    // Opaque to the server (encrypted by the client): any JSON, as Synapse keeps it.
    let session_data = obj.get("session_data").filter(|v| !v.is_null()).ok_or_else(|| bad("session_data missing"))?;
    Ok(KeyRow {
        first_message_index: int("first_message_index")?,
        forwarded_count: int("forwarded_count")?,
        is_verified: obj.get("is_verified").and_then(Value::as_bool).ok_or_else(|| bad("is_verified missing"))?,
        session_data: session_data.to_string(),
    })
}

fn key_to_json(key: &KeyRow) -> Value {
    json!({
        "first_message_index": key.first_message_index,
        "forwarded_count": key.forwarded_count,
        "is_verified": key.is_verified,
        "session_data": serde_json::from_str::<Value>(&key.session_data).unwrap_or_else(|_| json!({})),
    })
}

/// Version numbers are positive decimal integers; anything else names no version.
fn parse_version(version: &str) -> Option<i64> {
    (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())).then(|| version.parse().ok()).flatten()
}

fn unknown_version(version: &str) -> Error {
    Error::not_found(format!("Unknown backup version {version:?}"))
}

fn no_backup() -> Error {
    Error::not_found("No current backup version")
}

/// A live version by its string, or 404.
async fn live_version(c: &impl GenericClient, user_id: &str, version: &str, lock: bool) -> Result<VersionRow> {
    let number = parse_version(version).ok_or_else(|| unknown_version(version))?;
    store::version(c, user_id, number, lock).await?.ok_or_else(|| unknown_version(version))
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_create_backup_version(&self, req: CreateBackupVersionRequest) -> Result<BackupVersion> {
        let client = self.pool.get().await?;
        let version = store::create(&client, &req.user_id, &req.algorithm, &req.auth_data_json).await?;
        info!(user_id = %req.user_id, version, "key backup version created");
        Ok(BackupVersion {
            version: version.to_string(),
            algorithm: req.algorithm,
            auth_data_json: req.auth_data_json,
            count: 0,
            etag: "0".into(),
        })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_get_backup_version(&self, req: GetBackupVersionRequest) -> Result<BackupVersion> {
        let client = self.pool.get().await?;
        let row = match &req.version {
            Some(v) => live_version(&client, &req.user_id, v, false).await?,
            None => store::current(&client, &req.user_id, false).await?.ok_or_else(no_backup)?,
        };
        let count = store::count(&client, &req.user_id, row.version).await?;
        Ok(BackupVersion {
            version: row.version.to_string(),
            algorithm: row.algorithm,
            auth_data_json: row.auth_data,
            count,
            etag: row.etag.to_string(),
        })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, version = %req.version))]
    pub(crate) async fn do_update_backup_version(&self, req: UpdateBackupVersionRequest) -> Result<AuthAck> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = live_version(&tx, &req.user_id, &req.version, true).await?;
        if row.algorithm != req.algorithm {
            return Err(Error::invalid_param("Algorithm does not match"));
        }
        store::update(&tx, &req.user_id, row.version, &req.auth_data_json).await?;
        tx.commit().await?;
        Ok(AuthAck {})
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_delete_backup_version(&self, req: GetBackupVersionRequest) -> Result<AuthAck> {
        let version = req.version.unwrap_or_default();
        let number = parse_version(&version).ok_or_else(|| unknown_version(&version))?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !store::delete_version(&tx, &req.user_id, number).await? {
            return Err(unknown_version(&version));
        }
        tx.commit().await?;
        info!(user_id = %req.user_id, version = number, "key backup version deleted");
        Ok(AuthAck {})
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, version = %req.version))]
    pub(crate) async fn do_get_room_keys(&self, req: RoomKeysRequest) -> Result<RoomKeysJson> {
        let client = self.pool.get().await?;
        let row = live_version(&client, &req.user_id, &req.version, false).await?;
        let (room, session) = (req.room_id.as_deref(), req.room_id.as_ref().and(req.session_id.as_deref()));
        let keys = store::keys(&client, &req.user_id, row.version, room, session).await?;
        let body = match (room, session) {
            (Some(_), Some(_)) => match keys.first() {
                Some((_, _, key)) => key_to_json(key),
                None => return Err(Error::not_found("No room_keys found")),
            },
            (Some(_), None) => {
                let sessions: Map<String, Value> = keys.iter().map(|(_, s, k)| (s.clone(), key_to_json(k))).collect();
                json!({ "sessions": sessions })
            }
            _ => {
                let mut rooms = Map::new();
                for (r, s, k) in &keys {
                    let entry = rooms.entry(r.clone()).or_insert_with(|| json!({ "sessions": {} }));
                    entry["sessions"][s] = key_to_json(k);
                }
                json!({ "rooms": rooms })
            }
        };
        Ok(RoomKeysJson { json: body.to_string() })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, version = %req.version))]
    pub(crate) async fn do_put_room_keys(&self, req: PutRoomKeysRequest) -> Result<RoomKeysCount> {
        let keys = parse_rooms(&req.rooms_json)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The version row is locked so etag bumps and counts of concurrent uploads serialise.
        let current = store::current(&tx, &req.user_id, true).await?.ok_or_else(|| unknown_version(&req.version))?;
        if parse_version(&req.version) != Some(current.version) {
            return Err(Error::new(ErrorCode::WrongRoomKeysVersion, "Wrong backup version.")
                .with_field("current_version", current.version.to_string()));
        }
        let mut changed = false;
        for (room_id, session_id, new) in &keys {
            let old = store::key(&tx, &req.user_id, current.version, room_id, session_id).await?;
            if old.as_ref().is_none_or(|old| should_replace(old, new)) {
                store::put_key(&tx, &req.user_id, current.version, room_id, session_id, new).await?;
                changed = true;
            }
        }
        let etag = if changed { store::bump_etag(&tx, &req.user_id, current.version).await? } else { current.etag };
        let count = store::count(&tx, &req.user_id, current.version).await?;
        tx.commit().await?;
        Ok(RoomKeysCount { etag: etag.to_string(), count })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, version = %req.version))]
    pub(crate) async fn do_delete_room_keys(&self, req: RoomKeysRequest) -> Result<RoomKeysCount> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = live_version(&tx, &req.user_id, &req.version, true).await?;
        let (room, session) = (req.room_id.as_deref(), req.room_id.as_ref().and(req.session_id.as_deref()));
        let deleted = store::delete_keys(&tx, &req.user_id, row.version, room, session).await?;
        let etag = if deleted > 0 { store::bump_etag(&tx, &req.user_id, row.version).await? } else { row.etag };
        let count = store::count(&tx, &req.user_id, row.version).await?;
        tx.commit().await?;
        Ok(RoomKeysCount { etag: etag.to_string(), count })
    }
}

/// `{"rooms": {room_id: {"sessions": {session_id: KeyBackupData}}}}` into its keys.
fn parse_rooms(rooms_json: &str) -> Result<Vec<(String, String, KeyRow)>> {
    let bad = |m: &str| Error::bad_json(m.to_owned());
    let value: Value = serde_json::from_str(rooms_json).map_err(|_| bad("body must be JSON"))?;
    let rooms = value.get("rooms").and_then(Value::as_object).ok_or_else(|| bad("rooms must be an object"))?;
    let mut keys = Vec::new();
    for (room_id, room) in rooms {
        let sessions =
            room.get("sessions").and_then(Value::as_object).ok_or_else(|| bad("sessions must be an object"))?;
        for (session_id, key) in sessions {
            keys.push((room_id.clone(), session_id.clone(), key_from_json(key)?));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verified: bool, index: i64, forwarded: i64) -> KeyRow {
        KeyRow {
            first_message_index: index,
            forwarded_count: forwarded,
            is_verified: verified,
            session_data: "{}".into(),
        }
    }

    #[test]
    fn the_better_key_is_kept() {
        assert!(should_replace(&key(false, 0, 0), &key(true, 5, 5)), "verified beats unverified");
        assert!(!should_replace(&key(true, 5, 5), &key(false, 0, 0)));
        assert!(should_replace(&key(true, 5, 0), &key(true, 3, 9)), "lower first_message_index wins");
        assert!(!should_replace(&key(true, 3, 0), &key(true, 5, 0)));
        assert!(should_replace(&key(false, 3, 2), &key(false, 3, 1)), "then lower forwarded_count");
        assert!(!should_replace(&key(false, 3, 1), &key(false, 3, 1)), "a tie keeps the stored key");
    }

    #[test]
    fn key_backup_data_is_validated() {
        let ok = json!({"first_message_index": 1, "forwarded_count": 0, "is_verified": true, "session_data": {"a": 1}});
        assert_eq!(key_from_json(&ok).unwrap(), KeyRow { session_data: r#"{"a":1}"#.into(), ..key(true, 1, 0) });
        for bad in [
            json!({}),
            json!({"first_message_index": "1", "forwarded_count": 0, "is_verified": true,
            "session_data": {}}),
            json!({"first_message_index": 1, "forwarded_count": 0, "is_verified": true}),
        ] {
            assert_eq!(key_from_json(&bad).unwrap_err().code(), ErrorCode::BadJson, "{bad}");
        }
        assert_eq!(parse_version("12"), Some(12));
        assert_eq!(parse_version("x"), None);
        assert_eq!(parse_version("-1"), None);
        assert_eq!(parse_version(""), None);
    }
}
