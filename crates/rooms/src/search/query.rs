//! The search itself: which rooms the user may search (those they are in, and those they
//! left up to their departure), the term as a PostgreSQL text-search query, and pages of
//! matches in rank or recency order with history visibility applied.

use std::collections::HashMap;

use ruma::api::client::filter::RoomEventFilter;
use tokio_postgres::types::ToSql;
use trellis_core::{Result, time::now_ms};
use trellis_storage::{
    erasure,
    events::{COLUMNS, EventRow},
    visibility::{self, RoomHistory},
};

use super::token::{Cursor, Only};

/// At most this many words of a search term count.
const MAX_WORDS: usize = 16;
/// Rounds of fetching when history visibility hides matches, as Synapse bounds it.
const MAX_ROUNDS: usize = 5;

const SELECT_ROOMS: &str = "SELECT room_id, membership, pos FROM memberships WHERE user_id = $1 \
     AND (membership = 'join' OR (membership IN ('leave', 'ban') AND NOT forgotten))";

/// The search term as a text-search query: every word must match, each as a prefix (so a
/// word being typed matches). Words are runs of letters and digits, which the query syntax
/// takes literally. `None` when the term has no words.
pub(crate) fn tsquery(term: &str) -> Option<String> {
    let words: Vec<String> = term
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(|w| format!("{}:*", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

/// What the user may read of the rooms they may search.
pub(crate) struct Readable {
    user: String,
    /// Room → the last position the user may read (their departure), `None` while joined.
    pub ceilings: HashMap<String, Option<i64>>,
    pub histories: HashMap<String, RoomHistory>,
}

impl Readable {
    /// The rooms `user` may search, narrowed by the filter's `rooms` and `not_rooms`.
    pub async fn load(client: &deadpool_postgres::Client, user: &str, filter: &RoomEventFilter) -> Result<Readable> {
        let stmt = client.prepare_cached(SELECT_ROOMS).await?;
        let mut ceilings = HashMap::new();
        for row in client.query(&stmt, &[&user]).await? {
            let (room, membership, pos): (String, &str, i64) = (row.get(0), row.get(1), row.get(2));
            let wanted = filter.rooms.as_ref().is_none_or(|r| r.iter().any(|id| id.as_str() == room))
                && !filter.not_rooms.iter().any(|id| id.as_str() == room);
            if wanted {
                ceilings.insert(room, (membership != "join").then_some(pos));
            }
        }
        let rooms: Vec<&str> = ceilings.keys().map(String::as_str).collect();
        let histories = visibility::load(client, user, &rooms).await?;
        Ok(Readable { user: user.to_owned(), ceilings, histories })
    }

    pub fn rooms(&self) -> Vec<&str> {
        self.ceilings.keys().map(String::as_str).collect()
    }

    /// Whether the user may see this event.
    pub fn sees(&self, row: &EventRow) -> bool {
        let Some(ceiling) = self.ceilings.get(&row.room_id) else { return false };
        ceiling.is_none_or(|c| row.pos <= c)
            && self.histories.get(&row.room_id).is_some_and(|h| h.allows(&self.user, row))
    }
}

/// One search: the query and everything that narrows it.
pub(crate) struct Search<'a> {
    pub tsquery: &'a str,
    pub rooms: Vec<&'a str>,
    pub keys: Vec<&'a str>,
    pub filter: &'a RoomEventFilter,
    pub recent: bool,
    pub only: Option<&'a Only>,
    /// Nothing past what readers may see.
    pub upper: i64,
}

/// One page of visible matches, each with its rank, and where the next page starts.
pub(crate) struct Page {
    pub hits: Vec<(f32, EventRow)>,
    pub next: Option<Cursor>,
}

impl Search<'_> {
    /// The conditions every query shares (`$1` the query, `$2` rooms, `$3` keys, `$4` the
    /// upper position), then the group restriction at `$5`.
    fn base(&self, args: &mut Vec<Box<dyn ToSql + Sync + Send>>) -> String {
        args.push(Box::new(self.tsquery.to_owned()));
        args.push(Box::new(self.rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>()));
        args.push(Box::new(self.keys.iter().map(|k| k.to_string()).collect::<Vec<_>>()));
        args.push(Box::new(self.upper));
        let mut sql = "s.vector @@ q AND s.room_id = ANY($2) AND s.key = ANY($3) AND s.pos <= $4".to_owned();
        match self.only {
            Some(Only::Room(room)) => {
                args.push(Box::new(room.clone()));
                sql.push_str(&format!(" AND s.room_id = ${}", args.len()));
            }
            Some(Only::Sender(sender)) => {
                args.push(Box::new(sender.clone()));
                sql.push_str(&format!(" AND e.sender = ${}", args.len()));
            }
            None => {}
        }
        sql
    }

    /// An approximate count of the matches (before history visibility and the filter).
    pub async fn count(&self, client: &deadpool_postgres::Client) -> Result<u64> {
        let mut args = Vec::new();
        let cond = self.base(&mut args);
        let sql = format!(
            "SELECT count(*) FROM event_search s JOIN events e ON e.event_id = s.event_id, \
             to_tsquery('english', $1) q WHERE {cond}"
        );
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
        Ok(client.query_one(&sql, &params).await?.get::<_, i64>(0).max(0) as u64)
    }

    /// Up to `limit` matches after `cursor` that `readable` lets the user see.
    pub async fn page(
        &self,
        client: &deadpool_postgres::Client,
        readable: &Readable,
        mut cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page> {
        let batch = (limit * 2).max(20);
        let mut hits = Vec::new();
        let now = now_ms();
        for _ in 0..MAX_ROUNDS {
            let mut rows = self.fetch(client, cursor, batch).await?;
            let full = rows.len() == batch;
            // A match whose text the viewer may not have — an erased user's, or a message past
            // its self-destruct time — is no result: that it matched would tell what it said.
            let stored: Vec<String> = rows.iter().map(|(_, r)| r.content.clone()).collect();
            erasure::hide_erased(client, |room| readable.histories.get(room), rows.iter_mut().map(|(_, r)| r)).await?;
            for ((rank, row), stored) in rows.into_iter().zip(stored) {
                cursor = Some(if self.recent {
                    Cursor::Recent { pos: row.pos }
                } else {
                    Cursor::Rank { rank, pos: row.pos }
                });
                if readable.sees(&row) && row.content == stored && !row.self_destructed(now) {
                    hits.push((rank, row));
                    if hits.len() == limit {
                        return Ok(Page { hits, next: cursor });
                    }
                }
            }
            if !full {
                return Ok(Page { hits, next: None });
            }
        }
        Ok(Page { hits, next: cursor })
    }

    async fn fetch(
        &self,
        client: &deadpool_postgres::Client,
        cursor: Option<Cursor>,
        batch: usize,
    ) -> Result<Vec<(f32, EventRow)>> {
        let mut args = Vec::new();
        let mut cond = self.base(&mut args);
        match cursor {
            Some(Cursor::Recent { pos }) => {
                args.push(Box::new(pos));
                cond.push_str(&format!(" AND s.pos < ${}", args.len()));
            }
            Some(Cursor::Rank { rank, pos }) => {
                args.push(Box::new(rank));
                args.push(Box::new(pos));
                let (r, p) = (args.len() - 1, args.len());
                cond.push_str(&format!(" AND (ts_rank_cd(s.vector, q)::real, s.pos) < (${r}::real, ${p})"));
            }
            None => {}
        }
        let (filter_cond, filter_args) = trellis_storage::filter::conditions(self.filter, args.len() + 1);
        args.extend(filter_args);
        args.push(Box::new(batch as i64));
        let limit = args.len();
        let order = if self.recent { "s.pos DESC" } else { "rank DESC, s.pos DESC" };
        let columns: Vec<String> = COLUMNS.split(',').map(|c| format!("e.{}", c.trim())).collect();
        let sql = format!(
            "SELECT ts_rank_cd(s.vector, q)::real AS rank, {} FROM event_search s \
             JOIN events e ON e.event_id = s.event_id, to_tsquery('english', $1) q \
             WHERE {cond}{filter_cond} ORDER BY {order} LIMIT ${limit}",
            columns.join(", ")
        );
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
        let rows = client.query(&sql, &params).await?;
        Ok(rows.iter().map(|r| (r.get::<_, f32>(0), EventRow::from_row_at(r, 1))).collect())
    }
}

const HIGHLIGHT: &str = "SELECT ts_headline('english', value, to_tsquery('english', $1), \
     'StartSel=\u{2}, StopSel=\u{3}, HighlightAll=TRUE') FROM event_search WHERE event_id = ANY($2)";

/// The words of the results that matched (their stemmed forms may differ from the term's),
/// for clients to highlight.
pub(crate) async fn highlights(client: &deadpool_postgres::Client, tsquery: &str, ids: &[&str]) -> Result<Vec<String>> {
    let mut words = std::collections::BTreeSet::new();
    for row in client.query(HIGHLIGHT, &[&tsquery, &ids]).await? {
        let marked: String = row.get(0);
        for piece in marked.split('\u{2}').skip(1) {
            if let Some((word, _)) = piece.split_once('\u{3}') {
                words.insert(word.to_owned());
            }
        }
    }
    Ok(words.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::tsquery;

    #[test]
    fn terms_become_prefix_queries_of_their_words() {
        assert_eq!(tsquery("Hello, world!").as_deref(), Some("hello:* & world:*"));
        assert_eq!(tsquery("a&b|!c:*").as_deref(), Some("a:* & b:* & c:*"), "query syntax is never passed on");
        assert_eq!(tsquery("  ... "), None);
        assert_eq!(tsquery("Grüße").as_deref(), Some("grüße:*"));
    }
}
