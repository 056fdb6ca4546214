//! Identifier helpers on top of ruma: validation of new localparts and random IDs
//! (device IDs, tokens, media IDs, transaction-free event keys).

use rand::{RngExt, distr::Alphanumeric};

pub use ruma::{
    DeviceId, EventId, MxcUri, OwnedDeviceId, OwnedEventId, OwnedMxcUri, OwnedRoomAliasId, OwnedRoomId,
    OwnedRoomOrAliasId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId, RoomOrAliasId, RoomVersionId, ServerName,
    UserId,
};

use crate::error::{Error, ErrorCode};

/// Longest user ID the spec allows (`@localpart:server`), in bytes.
pub const MAX_USER_ID_LEN: usize = 255;

/// Checks a localpart offered at registration against the spec's rules for *new* user IDs:
/// lowercase `a-z`, digits, and `._=-/+`, non-empty, and the full ID within 255 bytes.
pub fn validate_new_localpart(localpart: &str, server_name: &str) -> Result<(), Error> {
    if localpart.is_empty() {
        return Err(Error::new(ErrorCode::InvalidUsername, "username must not be empty"));
    }
    let allowed = |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+');
    if !localpart.chars().all(allowed) {
        return Err(Error::new(ErrorCode::InvalidUsername, "username may only contain a-z, 0-9, and . _ = - / +"));
    }
    if localpart.len() + server_name.len() + 2 > MAX_USER_ID_LEN {
        return Err(Error::new(ErrorCode::InvalidUsername, "username is too long"));
    }
    Ok(())
}

/// Builds `@localpart:server` for a localpart that already passed validation.
pub fn user_id(localpart: &str, server_name: &str) -> Result<OwnedUserId, Error> {
    UserId::parse(format!("@{localpart}:{server_name}"))
        .map_err(|_| Error::new(ErrorCode::InvalidUsername, "not a valid user ID"))
}

/// A user ID the server acts on (an invitee, a member's state key): ruma's grammar, which
/// admits historical IDs, and a localpart that is not empty (`user_id_localpart =
/// 1*user_id_char`). `M_INVALID_PARAM` otherwise.
pub fn parse_user_id(id: &str) -> Result<OwnedUserId, Error> {
    let parsed = UserId::parse(id).map_err(|_| Error::invalid_param(format!("invalid user ID {id:?}")))?;
    if parsed.localpart().is_empty() {
        return Err(Error::invalid_param(format!("user ID {id:?} has an empty localpart")));
    }
    Ok(parsed)
}

/// A room alias the server creates, resolves or checks: ruma's grammar and a localpart that is
/// not empty (`#:server` names nothing). `M_INVALID_PARAM` otherwise.
pub fn parse_room_alias(alias: &str) -> Result<OwnedRoomAliasId, Error> {
    let parsed =
        RoomAliasId::parse(alias).map_err(|_| Error::invalid_param(format!("invalid room alias {alias:?}")))?;
    if parsed.alias().is_empty() {
        return Err(Error::invalid_param(format!("room alias {alias:?} has an empty localpart")));
    }
    Ok(parsed)
}

/// A random alphanumeric string from a cryptographically secure generator.
/// An identity server's base URL: `https://` before the `id_server` a client names (a server
/// name and optional port, without a scheme, in the spec's requests); `M_INVALID_PARAM` for
/// anything else, so a client cannot point the homeserver at an arbitrary URL.
pub fn identity_server_base(id_server: &str) -> Result<String, Error> {
    let ok = !id_server.is_empty()
        && id_server.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    match ok {
        true => Ok(format!("https://{id_server}")),
        false => Err(Error::invalid_param("id_server must be a server name")),
    }
}

pub fn random_string(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A new device ID: ten uppercase letters, like the IDs Synapse hands out.
pub fn new_device_id() -> OwnedDeviceId {
    let id: String = (0..10).map(|_| char::from(b'A' + rand::random_range(0..26u8))).collect();
    id.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localpart_rules() {
        assert!(validate_new_localpart("alice.b_c=d-e/f+g1", "localhost").is_ok());
        for bad in ["", "Alice", "al ice", "al:ice", "äli"] {
            let err = validate_new_localpart(bad, "localhost").unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidUsername, "{bad:?}");
        }
        let long = "a".repeat(250);
        assert!(validate_new_localpart(&long, "localhost").is_err());
    }

    #[test]
    fn id_servers_are_server_names() {
        assert_eq!(identity_server_base("id.example.org:8090").unwrap(), "https://id.example.org:8090");
        for bad in ["", "https://id.example.org", "id.example.org/path", "a b"] {
            assert_eq!(identity_server_base(bad).unwrap_err().code(), ErrorCode::InvalidParam, "{bad:?}");
        }
    }

    #[test]
    fn empty_localparts_are_refused() {
        assert_eq!(parse_user_id("@:localhost").unwrap_err().code(), ErrorCode::InvalidParam);
        assert_eq!(parse_room_alias("#:localhost").unwrap_err().code(), ErrorCode::InvalidParam);
        assert_eq!(parse_user_id("@a:localhost").unwrap().localpart(), "a");
        assert_eq!(parse_user_id("@Hist\u{1}:localhost").unwrap().localpart(), "Hist\u{1}", "historical IDs stay");
        assert_eq!(parse_room_alias("#a:localhost").unwrap().alias(), "a");
        assert!(parse_user_id("alice").is_err() && parse_room_alias("#a").is_err());
    }

    #[test]
    fn random_ids_look_right() {
        let d = new_device_id();
        assert_eq!(d.as_str().len(), 10);
        assert!(d.as_str().chars().all(|c| c.is_ascii_uppercase()));
        let a = random_string(32);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_string(32));
    }
}
