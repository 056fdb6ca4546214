//! Profiles: display name and avatar URL.

use tracing::{info, instrument};
use trellis_core::{Error, Result};
use trellis_proto::auth::{GetProfileRequest, Profile, ProfileField, SetProfileRequest};

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

fn profile(user_id: String, row: ProfileRow) -> Profile {
    Profile { user_id, displayname: row.displayname, avatar_url: row.avatar_url }
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
        if req.requester != req.user_id {
            return Err(Error::forbidden("You may only change your own profile"));
        }
        let field = match req.field() {
            ProfileField::Displayname => Field::Displayname,
            ProfileField::AvatarUrl => Field::AvatarUrl,
            ProfileField::Unspecified => return Err(Error::invalid_param("Unknown profile field")),
        };
        let value = check_value(field, req.value.as_deref())?;
        let client = self.pool.get().await?;
        let row = store::set_profile_field(&client, &req.user_id, field, value).await?.ok_or_else(no_profile)?;
        info!(user_id = %req.user_id, ?field, cleared = value.is_none(), "profile updated");
        Ok(profile(req.user_id, row))
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
}
