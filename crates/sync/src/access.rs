//! Who may do what: the checks shared by the sync service's write paths.

use trellis_core::{Error, Result};

const IS_JOINED: &str = "SELECT 1 FROM memberships WHERE user_id = $1 AND room_id = $2 AND membership = 'join'";
const JOINED_ROOMS: &str = "SELECT room_id FROM memberships WHERE user_id = $1 AND membership = 'join'";

/// `M_FORBIDDEN` unless the requester acts for themself.
pub fn own(requester: &str, user_id: &str) -> Result<()> {
    if requester != user_id {
        return Err(Error::forbidden("You cannot do this for another user"));
    }
    Ok(())
}

/// `M_FORBIDDEN` unless `user` is joined to `room`.
pub async fn joined(client: &deadpool_postgres::Client, user: &str, room: &str) -> Result<()> {
    let stmt = client.prepare_cached(IS_JOINED).await?;
    match client.query_opt(&stmt, &[&user, &room]).await? {
        Some(_) => Ok(()),
        None => Err(Error::forbidden("You are not in this room")),
    }
}

/// The rooms `user` is joined to.
pub async fn joined_rooms(client: &deadpool_postgres::Client, user: &str) -> Result<Vec<String>> {
    let stmt = client.prepare_cached(JOINED_ROOMS).await?;
    Ok(client.query(&stmt, &[&user]).await?.iter().map(|r| r.get(0)).collect())
}

/// A syntactically valid room ID, else `M_INVALID_PARAM`.
pub fn room_id(room: &str) -> Result<()> {
    ruma::RoomId::parse(room).map(|_| ()).map_err(|_| Error::invalid_param("invalid room ID"))
}
