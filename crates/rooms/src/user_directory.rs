//! The user directory (`POST /user_directory/search`): users who share a room with the
//! searcher or sit in a public room (one anyone may join or read), matched word by word
//! against their user ID and global display name. As in Synapse, the searcher finds
//! themselves only through a public room, never through a private one. Deactivated accounts
//! are never listed.

use trellis_core::Result;
use trellis_proto::rooms::{DirectoryUser, SearchUsersRequest, SearchUsersResponse};

use crate::Rooms;

const DEFAULT_LIMIT: u32 = 10;
const MAX_LIMIT: u32 = 100;
/// More words than this in a search term are ignored.
const MAX_WORDS: usize = 8;

/// `$1` the searcher, `$2` one ILIKE pattern per word (each must match the ID or the name),
/// `$3` a prefix pattern that ranks first, `$4` the row limit.
const SEARCH: &str = "WITH visible AS ( \
       SELECT m2.user_id FROM memberships m1 \
       JOIN memberships m2 ON m2.room_id = m1.room_id AND m2.membership = 'join' AND m2.user_id <> $1 \
       WHERE m1.user_id = $1 AND m1.membership = 'join' \
     UNION \
       SELECT m.user_id FROM current_state c \
       JOIN events e ON e.event_id = c.event_id \
       JOIN memberships m ON m.room_id = c.room_id AND m.membership = 'join' \
       WHERE ((c.type = 'm.room.join_rules' AND trellis_jsonb(e.content)->>'join_rule' = 'public') \
           OR (c.type = 'm.room.history_visibility' \
               AND trellis_jsonb(e.content)->>'history_visibility' = 'world_readable')) \
         AND c.state_key = '') \
     SELECT v.user_id, p.displayname, p.avatar_url \
     FROM visible v \
     JOIN users u ON u.user_id = v.user_id AND NOT u.deactivated \
     LEFT JOIN profiles p ON p.user_id = v.user_id \
     WHERE NOT EXISTS ( \
       SELECT 1 FROM unnest($2::text[]) w \
       WHERE NOT (v.user_id ILIKE w ESCAPE '\\' OR coalesce(p.displayname, '') ILIKE w ESCAPE '\\')) \
     ORDER BY (coalesce(p.displayname, '') ILIKE $3 ESCAPE '\\' \
               OR substr(v.user_id, 2) ILIKE $3 ESCAPE '\\') DESC, \
              p.displayname NULLS LAST, v.user_id \
     LIMIT $4";

impl Rooms {
    #[tracing::instrument(skip_all)]
    pub(crate) async fn search_users(&self, req: SearchUsersRequest) -> Result<SearchUsersResponse> {
        let limit = match req.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let words: Vec<String> =
            req.search_term.split_whitespace().take(MAX_WORDS).map(|w| format!("%{}%", escape_like(w))).collect();
        let first = req.search_term.split_whitespace().next().unwrap_or("");
        let prefix = format!("{}%", escape_like(first));
        let client = self.pool.get().await?;
        let rows = client.query(SEARCH, &[&req.requester, &words, &prefix, &(i64::from(limit) + 1)]).await?;
        let limited = rows.len() > limit as usize;
        let results = rows
            .into_iter()
            .take(limit as usize)
            .map(|r| DirectoryUser { user_id: r.get(0), display_name: r.get(1), avatar_url: r.get(2) })
            .collect();
        Ok(SearchUsersResponse { results, limited })
    }
}

/// `s` with LIKE's wildcards and escape character taken literally.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_wildcards_are_literal() {
        assert_eq!(super::escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
