//! SQL conditions for a `RoomEventFilter` (types, senders, URL), shared by `/messages` and
//! the sync timeline so both filter exactly alike.

use ruma::api::client::filter::{RoomEventFilter, UrlFilter};
use tokio_postgres::types::ToSql;

pub type Param = Box<dyn ToSql + Sync + Send>;

/// `" AND ..."` conditions on the `events` columns `type`, `sender`, `content`, numbering
/// parameters from `$next`. Returns the clause and its parameters, in order.
pub fn conditions(filter: &RoomEventFilter, mut next: usize) -> (String, Vec<Param>) {
    let mut sql = String::new();
    let mut params: Vec<Param> = Vec::new();
    let mut push = |clause: String, param: Param, sql: &mut String| {
        sql.push_str(&clause);
        params.push(param);
    };
    if let Some(types) = &filter.types {
        if types.is_empty() {
            sql.push_str(" AND false");
        } else {
            push(format!(" AND type LIKE ANY(${next})"), Box::new(like_patterns(types)), &mut sql);
            next += 1;
        }
    }
    if !filter.not_types.is_empty() {
        push(format!(" AND NOT (type LIKE ANY(${next}))"), Box::new(like_patterns(&filter.not_types)), &mut sql);
        next += 1;
    }
    if let Some(senders) = &filter.senders {
        if senders.is_empty() {
            sql.push_str(" AND false");
        } else {
            let s: Vec<String> = senders.iter().map(|u| u.to_string()).collect();
            push(format!(" AND sender = ANY(${next})"), Box::new(s), &mut sql);
            next += 1;
        }
    }
    if !filter.not_senders.is_empty() {
        let s: Vec<String> = filter.not_senders.iter().map(|u| u.to_string()).collect();
        push(format!(" AND NOT (sender = ANY(${next}))"), Box::new(s), &mut sql);
    }
    match filter.url_filter {
        Some(UrlFilter::EventsWithUrl) => sql.push_str(" AND jsonb_exists(trellis_jsonb(content), 'url')"),
        Some(UrlFilter::EventsWithoutUrl) => {
            sql.push_str(" AND NOT coalesce(jsonb_exists(trellis_jsonb(content), 'url'), false)")
        }
        _ => {}
    }
    (sql, params)
}

/// Filter type globs (`m.room.*`) as LIKE patterns.
pub fn like_patterns(globs: &[String]) -> Vec<String> {
    globs.iter().map(|g| g.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_").replace('*', "%")).collect()
}

/// Whether `kind` matches any of the filter's type globs (in-memory twin of `like_patterns`).
pub fn glob_match(glob: &str, kind: &str) -> bool {
    match glob.split_once('*') {
        None => glob == kind,
        Some((head, tail)) => {
            kind.len() >= head.len() && kind.starts_with(head) && {
                let rest = &kind[head.len()..];
                (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob_match(tail, &rest[i..]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_like_patterns() {
        assert_eq!(like_patterns(&["m.room.*".into(), "a_b%".into()]), vec!["m.room.%", "a\\_b\\%"]);
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("m.room.*", "m.room.message"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("m.*.message", "m.room.message"));
        assert!(!glob_match("m.room.*", "m.call.invite"));
        assert!(!glob_match("m.room.message", "m.room.messages"));
    }

    #[test]
    fn empty_lists_match_nothing_and_params_are_numbered() {
        let f: RoomEventFilter = serde_json::from_value(serde_json::json!({
            "types": ["m.room.message"], "not_senders": ["@x:y"], "contains_url": true
        }))
        .unwrap();
        let (sql, params) = conditions(&f, 3);
        assert_eq!(
            sql,
            " AND type LIKE ANY($3) AND NOT (sender = ANY($4)) AND jsonb_exists(trellis_jsonb(content), 'url')"
        );
        assert_eq!(params.len(), 2);
        let none: RoomEventFilter = serde_json::from_value(serde_json::json!({"senders": []})).unwrap();
        assert_eq!(conditions(&none, 1).0, " AND false");
    }
}
