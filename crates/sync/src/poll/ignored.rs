//! Ignored users (`m.ignored_user_list` global account data, spec: "Ignoring Users"): their
//! non-state events are left out of the user's timelines and their invites out of the user's
//! sync. Each worker keeps every user's list with the positions it is exact for, so the fast
//! path knows it without a query and the exact path reads it only when the list may have
//! changed.

use std::{collections::HashSet, sync::Arc};

use serde_json::Value;
use trellis_bus::{Channel, Subscription};
use trellis_core::{Result, Stream, StreamToken};

use crate::{SyncWorker, queries::Client};

pub(crate) const IGNORED_USER_LIST: &str = "m.ignored_user_list";
const GET: &str =
    "SELECT content FROM account_data WHERE user_id = $1 AND room_id = '' AND type = 'm.ignored_user_list'";

pub(crate) type Ignored = Arc<HashSet<String>>;

const AD: Stream = Stream::AccountData;

/// The users listed in an `m.ignored_user_list` content.
pub(crate) fn parse(content: &Value) -> HashSet<String> {
    content["ignored_users"].as_object().map(|users| users.keys().cloned().collect()).unwrap_or_default()
}

impl SyncWorker {
    /// The users `user` ignores, for a sync of the account-data window `(since, upto]` whose
    /// global account data is `window` (all of it when `since` is `None`).
    pub(crate) async fn ignored_users(
        &self,
        client: &Client,
        user: &str,
        since: Option<i64>,
        upto: StreamToken,
        window: &[Value],
    ) -> Result<Ignored> {
        let changed = window.iter().rev().find(|e| e["type"] == IGNORED_USER_LIST);
        let list = match (changed, since) {
            (Some(event), _) => Arc::new(parse(&event["content"])),
            // An initial sync's window holds all of the user's account data.
            (None, None) => Arc::new(HashSet::new()),
            (None, Some(since)) => match self.caches.ignored.get(user).filter(|(at, _)| at.get(AD) >= since) {
                Some((_, list)) => list,
                None => {
                    let stmt = client.prepare_cached(GET).await?;
                    let row = client.query_opt(&stmt, &[&user]).await?;
                    let content: Value =
                        row.and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()).unwrap_or_default();
                    Arc::new(parse(&content))
                }
            },
        };
        if self.caches.ignored.get(user).is_none_or(|(at, _)| at.get(AD) <= upto.get(AD)) {
            self.caches.ignored.insert(user.to_owned(), (upto, list.clone()));
        }
        Ok(list)
    }

    /// The cached list when it is exact for a woken long-poll from `since` that saw no change
    /// on the user's channel: read at or after `since`, or the hub vouches that the user's
    /// channel (where account data is announced) saw no change since it was read.
    pub(crate) fn ignored_cached(&self, user: &str, since: StreamToken, sub: &Subscription) -> Option<Ignored> {
        let (at, list) = self.caches.ignored.get(user)?;
        if at.get(AD) >= since.get(AD) {
            return Some(list);
        }
        let news = sub.news_since(&at);
        (news.known && !news.changes.iter().any(|(c, _, _)| matches!(c, Channel::User(_)))).then_some(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_ignored_users() {
        let content = serde_json::json!({"ignored_users": {"@a:x": {}, "@b:x": {}}});
        assert_eq!(parse(&content), HashSet::from(["@a:x".to_owned(), "@b:x".to_owned()]));
        assert!(parse(&serde_json::json!({"ignored_users": []})).is_empty());
        assert!(parse(&serde_json::json!({})).is_empty());
    }
}
