//! The operators' view of accounts (admin API and CLI): who is a server admin, and the
//! user list and details in Synapse's terms. The changes are in `admin_write.rs`.

use deadpool_postgres::GenericClient;
use ruma::UserId;
use tracing::instrument;
use trellis_core::{Error, Result};
use trellis_proto::auth::{
    AdminListUsersRequest, AdminUser, AdminUserList, AdminUserRequest, AuthAck, RequireAdminRequest,
};

use crate::service::Auth;

/// Most users one page of the list holds.
pub const MAX_LIMIT: i32 = 1000;

const IS_ADMIN: &str = "SELECT admin FROM users WHERE user_id = $1 AND NOT deactivated";
const COLUMNS: &str = "u.user_id, p.displayname, p.avatar_url, u.is_guest, u.admin, u.deactivated, u.erased, \
                       u.locked, u.created_ts, (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id), \
                       u.suspended, u.shadow_banned";

/// The SQL column for one of Synapse's `order_by` names.
fn order_column(order_by: &str) -> Result<&'static str> {
    Ok(match order_by {
        "" | "name" => "u.user_id",
        "displayname" => "p.displayname",
        "avatar_url" => "p.avatar_url",
        "is_guest" => "u.is_guest",
        "admin" => "u.admin",
        "deactivated" => "u.deactivated",
        "erased" => "u.erased",
        "locked" => "u.locked",
        "creation_ts" => "u.created_ts",
        "last_seen_ts" => "10",
        // Synapse's columns this server does not keep: every value is the same.
        "shadow_banned" => "u.shadow_banned",
        "user_type" | "approved" => "u.user_id",
        other => return Err(Error::invalid_param(format!("Unknown value for order_by: {other}"))),
    })
}

pub(crate) fn user_row(row: &tokio_postgres::Row) -> AdminUser {
    AdminUser {
        user_id: row.get(0),
        displayname: row.get(1),
        avatar_url: row.get(2),
        is_guest: row.get(3),
        admin: row.get(4),
        deactivated: row.get(5),
        erased: row.get(6),
        locked: row.get(7),
        creation_ts: row.get(8),
        last_seen_ts: row.get(9),
        suspended: row.get(10),
        shadow_banned: row.get(11),
    }
}

/// The account `user_id`, if there is one.
pub(crate) async fn find_user(c: &impl GenericClient, user_id: &str) -> Result<Option<AdminUser>> {
    let sql =
        format!("SELECT {COLUMNS} FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id WHERE u.user_id = $1");
    let stmt = c.prepare_cached(&sql).await?;
    Ok(c.query_opt(&stmt, &[&user_id]).await?.as_ref().map(user_row))
}

pub(crate) fn user_not_found() -> Error {
    Error::not_found("User not found")
}

/// `user_id` parsed, and of this server (`M_INVALID_PARAM` otherwise, as Synapse).
pub(crate) fn local_user(user_id: &str, server_name: &str) -> Result<()> {
    let parsed = UserId::parse(user_id).map_err(|_| Error::invalid_param(format!("Invalid user ID: {user_id}")))?;
    if parsed.server_name().as_str() != server_name {
        return Err(Error::invalid_param("This endpoint can only be used with local users"));
    }
    Ok(())
}

/// `M_FORBIDDEN` unless `user_id` is a server admin (whose account is active).
pub(crate) async fn require_admin(c: &impl GenericClient, user_id: &str) -> Result<()> {
    let stmt = c.prepare_cached(IS_ADMIN).await?;
    if !c.query_opt(&stmt, &[&user_id]).await?.is_some_and(|r| r.get::<_, bool>(0)) {
        return Err(Error::forbidden("You are not a server admin"));
    }
    Ok(())
}

/// `%` and `_` taken literally in a `LIKE` pattern.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

impl Auth {
    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_require_admin(&self, req: RequireAdminRequest) -> Result<AuthAck> {
        require_admin(&self.pool.get().await?, &req.user_id).await?;
        Ok(AuthAck {})
    }

    #[instrument(skip_all)]
    pub(crate) async fn do_admin_list_users(&self, req: AdminListUsersRequest) -> Result<AdminUserList> {
        if req.from < 0 {
            return Err(Error::invalid_param("Query parameter from must be a string representing a positive integer."));
        }
        if !(0..=MAX_LIMIT).contains(&req.limit) {
            return Err(Error::invalid_param(format!("limit must be between 0 and {MAX_LIMIT}")));
        }
        let column = order_column(&req.order_by)?;
        // Filters as parameters: $1 name, $2 user_id, $3 guests, $4 deactivated, $5 admins.
        let filter = "FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id WHERE \
             ($1::text IS NULL OR u.user_id LIKE '@%' || $1 || '%:%' OR p.displayname ILIKE '%' || $1 || '%') \
             AND ($1::text IS NOT NULL OR $2::text IS NULL OR u.user_id LIKE '%' || $2 || '%') \
             AND ($3 OR NOT u.is_guest) \
             AND ($4::bool IS NULL OR u.deactivated = $4) AND ($5::bool IS NULL OR u.admin = $5)";
        let dir = if req.backwards { "DESC" } else { "ASC" };
        let page =
            format!("SELECT {COLUMNS} {filter} ORDER BY {column} {dir} NULLS LAST, u.user_id {dir} LIMIT $6 OFFSET $7");
        let count = format!("SELECT COUNT(*) {filter}");
        let name = req.name.as_deref().map(like_escape);
        let user_id = req.user_id.as_deref().map(like_escape);
        let (limit, from) = (i64::from(req.limit), req.from);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&name, &user_id, &req.guests, &req.deactivated, &req.admins, &limit, &from];
        let client = self.pool.get().await?;
        let rows = client.query(&client.prepare_cached(&page).await?, &params).await?;
        let total: i64 = client.query_one(&client.prepare_cached(&count).await?, &params[..5]).await?.get(0);
        Ok(AdminUserList { users: rows.iter().map(user_row).collect(), total })
    }

    #[instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn do_admin_get_user(&self, req: AdminUserRequest) -> Result<AdminUser> {
        local_user(&req.user_id, &self.config.server_name)?;
        let client = self.pool.get().await?;
        find_user(&client, &req.user_id).await?.ok_or_else(user_not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_core::ErrorCode;

    #[test]
    fn order_by_names() {
        assert_eq!(order_column("").unwrap(), "u.user_id");
        assert_eq!(order_column("creation_ts").unwrap(), "u.created_ts");
        assert_eq!(order_column("bogus").unwrap_err().code(), ErrorCode::InvalidParam);
    }

    #[test]
    fn like_patterns_are_literal() {
        assert_eq!(like_escape("a_b%c\\"), "a\\_b\\%c\\\\");
    }

    #[test]
    fn only_local_users() {
        assert!(local_user("@a:hs", "hs").is_ok());
        assert_eq!(local_user("@a:other", "hs").unwrap_err().code(), ErrorCode::InvalidParam);
        assert_eq!(local_user("nobody", "hs").unwrap_err().code(), ErrorCode::InvalidParam);
    }
}
