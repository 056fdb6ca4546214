//! Profiles: display name, avatar URL and custom fields (spec 1.16: `m.tz` and namespaced
//! keys), the whole profile under 64 KiB.

use tracing::{info, instrument};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::auth::{
    DeleteProfileFieldRequest, GetProfileRequest, Profile, ProfileField, SetProfileFieldRequest, SetProfileRequest,
};

use crate::{
    service::Auth,
    store::{self, Field, ProfileRow},
};

/// Longest display name, in characters (as Synapse).
pub const MAX_DISPLAYNAME_LEN: usize = 256;
/// Longest avatar URL, in characters (as Synapse).
pub const MAX_AVATAR_URL_LEN: usize = 1000;

/// Validates a new value: `None` or empty clears the field, as in Synapse.
pub fn check_value(field: Field, value: Option<&str>) -> Result<Option<&str>> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let (name, max) = match field {
        Field::Displayname => ("Displayname", MAX_DISPLAYNAME_LEN),
        Field::AvatarUrl => ("Avatar URL", MAX_AVATAR_URL_LEN),
    };
    if value.chars().count() > max {
        return Err(Error::invalid_param(format!("{name} is too long (max {max})")));
    }
    Ok(Some(value))
}

/// Longest profile key, in bytes (spec: `M_KEY_TOO_LARGE`).
pub const MAX_KEY_BYTES: usize = 255;
/// A whole profile, as JSON, stays under this many bytes (spec: `M_PROFILE_TOO_LARGE`).
pub const MAX_PROFILE_BYTES: usize = 64 * 1024;

/// A custom field's key: at most 255 bytes, `m.tz` or a namespaced identifier of the spec's
/// grammar (`[a-z][a-z0-9_]*` segments joined by dots), never another key of the spec's own
/// `m.` namespace. `displayname` and `avatar_url` are not custom fields.
pub fn check_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::new(ErrorCode::KeyTooLarge, "Profile keys are at most 255 bytes"));
    }
    let segment = |s: &str| {
        s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let namespaced = key.contains('.') && key.split('.').all(segment);
    if key == "m.tz" || (namespaced && !key.starts_with("m.")) {
        Ok(())
    } else {
        Err(Error::invalid_param(format!("Invalid profile key {key:?}")))
    }
}

/// The size of a profile as a client receives it.
fn size(row: &ProfileRow) -> usize {
    let mut all: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&row.fields).unwrap_or_default();
    if let Some(d) = &row.displayname {
        all.insert("displayname".into(), d.clone().into());
    }
    if let Some(a) = &row.avatar_url {
        all.insert("avatar_url".into(), a.clone().into());
    }
    serde_json::Value::Object(all).to_string().len()
}

fn profile(user_id: String, row: ProfileRow) -> Profile {
    Profile { user_id, displayname: row.displayname, avatar_url: row.avatar_url, fields_json: row.fields }
}

fn no_profile() -> Error {
    Error::not_found("Profile was not found")
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_get_profile(&self, req: GetProfileRequest) -> Result<Profile> {
        let client = self.pool.get().await?;
        let row = store::profile(&client, &req.user_id).await?.ok_or_else(no_profile)?;
        Ok(profile(req.user_id, row))
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, field = ?req.field()))]
    pub(crate) async fn do_set_profile(&self, req: SetProfileRequest) -> Result<Profile> {
        own_profile(&req.requester, &req.user_id)?;
        let field = match req.field() {
            ProfileField::Displayname => Field::Displayname,
            ProfileField::AvatarUrl => Field::AvatarUrl,
            ProfileField::Unspecified => return Err(Error::invalid_param("Unknown profile field")),
        };
        let value = check_value(field, req.value.as_deref())?;
        let client = self.pool.get().await?;
        let row = store::set_profile_field(&client, &req.user_id, field, value).await?.ok_or_else(no_profile)?;
        info!(user_id = %req.user_id, ?field, cleared = value.is_none(), "profile updated");
        let profile = profile(req.user_id, row);
        self.profile_changed(&profile).await?;
        Ok(profile)
    }
    #[instrument(skip_all, fields(user_id = %req.user_id, key = %req.key))]
    pub(crate) async fn do_set_profile_field(&self, req: SetProfileFieldRequest) -> Result<Profile> {
        own_profile(&req.requester, &req.user_id)?;
        check_key(&req.key)?;
        let value: serde_json::Value =
            serde_json::from_str(&req.value_json).map_err(|_| Error::bad_json("the value is not JSON"))?;
        if req.key == "m.tz" && !value.is_string() {
            return Err(Error::bad_json("m.tz is a time zone name, a string"));
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = store::set_custom_field(&tx, &req.user_id, &req.key, Some(&value.to_string()))
            .await?
            .ok_or_else(no_profile)?;
        if size(&row) >= MAX_PROFILE_BYTES {
            return Err(Error::new(ErrorCode::ProfileTooLarge, "The profile would exceed 64 KiB"));
        }
        tx.commit().await?;
        info!(user_id = %req.user_id, key = %req.key, "profile field set");
        Ok(profile(req.user_id, row))
    }

    #[instrument(skip_all, fields(user_id = %req.user_id, key = %req.key))]
    pub(crate) async fn do_delete_profile_field(&self, req: DeleteProfileFieldRequest) -> Result<Profile> {
        own_profile(&req.requester, &req.user_id)?;
        check_key(&req.key)?;
        let client = self.pool.get().await?;
        let row = store::set_custom_field(&client, &req.user_id, &req.key, None).await?.ok_or_else(no_profile)?;
        info!(user_id = %req.user_id, key = %req.key, "profile field removed");
        Ok(profile(req.user_id, row))
    }
}

/// Only the profile's owner may change it.
fn own_profile(requester: &str, user_id: &str) -> Result<()> {
    match requester == user_id {
        true => Ok(()),
        false => Err(Error::forbidden("You may only change your own profile")),
    }
}

#[cfg(test)]
mod tests {
    use trellis_core::ErrorCode;

    use super::*;

    #[test]
    fn values() {
        assert_eq!(check_value(Field::Displayname, None).unwrap(), None);
        assert_eq!(check_value(Field::Displayname, Some("")).unwrap(), None);
        assert_eq!(check_value(Field::Displayname, Some("Al")).unwrap(), Some("Al"));
        let name = "é".repeat(MAX_DISPLAYNAME_LEN);
        assert!(check_value(Field::Displayname, Some(&name)).is_ok(), "characters, not bytes");
        let long = "x".repeat(MAX_DISPLAYNAME_LEN + 1);
        let err = check_value(Field::Displayname, Some(&long)).unwrap_err();
        assert_eq!((err.code(), err.status()), (ErrorCode::InvalidParam, 400));
        assert!(check_value(Field::AvatarUrl, Some(&long)).is_ok());
        let long_url = "x".repeat(MAX_AVATAR_URL_LEN + 1);
        assert!(check_value(Field::AvatarUrl, Some(&long_url)).is_err());
    }

    #[test]
    fn custom_keys() {
        for ok in ["m.tz", "com.example.pronouns", "io.x_y.a1"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in
            ["displayname", "avatar_url", "m.status", "nodots", "Com.example", "com..x", "com.1x", "com.ex-ample", ""]
        {
            assert_eq!(check_key(bad).unwrap_err().code(), ErrorCode::InvalidParam, "{bad}");
        }
        let long = format!("com.{}", "a".repeat(MAX_KEY_BYTES));
        assert_eq!(check_key(&long).unwrap_err().code(), ErrorCode::KeyTooLarge);
    }
}
