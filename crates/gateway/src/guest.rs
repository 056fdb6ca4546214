//! What a guest account may call: the endpoints the spec's "Guest access" module lists
//! (reading rooms, joining, leaving and sending, their own display name, devices, keys,
//! media), and the few more Synapse opens to guests (capabilities, the room directory,
//! relations, space hierarchies and room summaries, `joined_rooms`, `keys/changes`, TURN). Every other authenticated endpoint
//! refuses a guest with 403 `M_GUEST_ACCESS_FORBIDDEN`.
//!
//! The table is matched against the route that served the request, with the `/_matrix/client`
//! prefix and its version (`r0`, `v3`, `v1`, `unstable/<namespace>`) taken off and every path
//! parameter written `*`, so one row covers every historical path of an endpoint.

use axum::http::Method;

/// `(method, route)` pairs open to guests.
const ALLOWED: &[(Method, &str)] = &[
    // Reading rooms (room previews included).
    (Method::GET, "sync"),
    (Method::GET, "events"),
    (Method::GET, "rooms/*/initialSync"),
    (Method::GET, "rooms/*/state"),
    (Method::GET, "rooms/*/state/*"),
    (Method::GET, "rooms/*/state/*/*"),
    (Method::GET, "rooms/*/context/*"),
    (Method::GET, "rooms/*/event/*"),
    (Method::GET, "rooms/*/messages"),
    (Method::GET, "rooms/*/members"),
    (Method::GET, "rooms/*/relations/*"),
    (Method::GET, "rooms/*/relations/*/*"),
    (Method::GET, "rooms/*/relations/*/*/*"),
    (Method::GET, "rooms/*/hierarchy"),
    (Method::GET, "room_summary/*"),
    (Method::GET, "rooms/*/summary"),
    (Method::GET, "joined_rooms"),
    (Method::GET, "publicRooms"),
    (Method::POST, "publicRooms"),
    (Method::GET, "capabilities"),
    (Method::GET, "media/config"),
    (Method::GET, "media/download/*/*"),
    (Method::GET, "media/download/*/*/*"),
    (Method::GET, "media/thumbnail/*/*"),
    (Method::GET, "voip/turnServer"),
    // Taking part in rooms.
    (Method::POST, "rooms/*/join"),
    (Method::POST, "join/*"),
    (Method::POST, "rooms/*/leave"),
    (Method::POST, "rooms/*/send/*"),
    (Method::PUT, "rooms/*/send/*/*"),
    (Method::PUT, "rooms/*/state/*"),
    (Method::PUT, "rooms/*/state/*/*"),
    (Method::PUT, "sendToDevice/*/*"),
    // Their own account.
    (Method::PUT, "profile/*/displayname"),
    (Method::DELETE, "profile/*/displayname"),
    (Method::GET, "devices"),
    (Method::GET, "devices/*"),
    (Method::PUT, "devices/*"),
    (Method::GET, "account/whoami"),
    // End-to-end encryption.
    (Method::POST, "keys/upload"),
    (Method::POST, "keys/query"),
    (Method::POST, "keys/claim"),
    (Method::GET, "keys/changes"),
];

/// Whether a guest may call `method` on the route `route` (a router pattern such as
/// `/_matrix/client/v3/rooms/{room_id}/messages`).
pub(crate) fn allowed(method: &Method, route: &str) -> bool {
    let Some(endpoint) = endpoint(route) else { return false };
    ALLOWED.iter().any(|(m, r)| m == method && *r == endpoint)
}

/// The route without prefix and version, path parameters as `*`.
fn endpoint(route: &str) -> Option<String> {
    let rest = route.strip_prefix("/_matrix/client/")?;
    let mut segments = rest.split('/');
    if segments.next()? == "unstable" {
        // `unstable/org.matrix.mscNNNN/...`: the namespace is part of the version.
        let mut peek = segments.clone();
        if peek.next().is_some_and(|s| s.contains('.')) {
            segments.next();
        }
    }
    let parts: Vec<&str> = segments.map(|s| if s.starts_with('{') { "*" } else { s }).collect();
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_list_on_every_version() {
        for route in [
            "/_matrix/client/v3/rooms/{room_id}/messages",
            "/_matrix/client/r0/rooms/{room_id}/messages",
            "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
            "/_matrix/client/v3/sync",
            "/_matrix/client/r0/events",
            "/_matrix/client/v1/media/download/{server_name}/{media_id}",
        ] {
            assert!(allowed(&Method::GET, route), "{route}");
        }
        assert!(allowed(&Method::PUT, "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}"));
        assert!(allowed(&Method::PUT, "/_matrix/client/v3/profile/{user_id}/displayname"));
        assert!(allowed(&Method::POST, "/_matrix/client/v3/join/{room_id_or_alias}"));
        assert!(allowed(&Method::POST, "/_matrix/client/unstable/org.matrix.msc0000/keys/query"));
    }

    #[test]
    fn everything_else_is_refused() {
        for (method, route) in [
            (Method::POST, "/_matrix/client/v3/createRoom"),
            (Method::PUT, "/_matrix/client/v3/profile/{user_id}/avatar_url"),
            (Method::GET, "/_matrix/client/v3/initialSync"),
            (Method::POST, "/_matrix/client/v3/rooms/{room_id}/invite"),
            (Method::PUT, "/_matrix/client/v3/user/{user_id}/account_data/{type}"),
            (Method::POST, "/_matrix/client/v3/user/{user_id}/filter"),
            (Method::PUT, "/_matrix/client/v3/rooms/{room_id}/typing/{user_id}"),
            (Method::DELETE, "/_matrix/client/v3/devices/{device_id}"),
            (Method::GET, "/_matrix/media/v3/download/{server_name}/{media_id}/{*rest}/extra"),
            (Method::GET, "/metrics"),
        ] {
            assert!(!allowed(&method, route), "{method} {route}");
        }
        // A method the route is not open to.
        assert!(!allowed(&Method::DELETE, "/_matrix/client/v3/rooms/{room_id}/messages"));
    }
}
