//! The meta of the rooms a sliding sync response sends whole or whose membership changed:
//! member counts, and the heroes with their display names and avatars.

use std::collections::{HashMap, HashSet};

use ruma::{OwnedMxcUri, OwnedUserId, api::client::sync::sync_events::v5::response::Hero};
use serde_json::Value;
use trellis_core::Result;
use trellis_storage::events::EventRow;

use super::request::MEMBER;
use crate::{SyncWorker, queries};

/// Counts and heroes, for the joined rooms sent whole or whose membership changed.
pub(crate) struct Meta {
    pub rooms: HashSet<String>,
    pub counts: HashMap<String, (u64, u64)>,
    pub heroes: HashMap<String, Vec<Hero>>,
}

impl SyncWorker {
    /// Step 4 of `sliding_rooms`: counts and heroes of `meta_rooms`.
    pub(crate) async fn sliding_meta(
        &self,
        client: &queries::Client,
        user: &str,
        meta_rooms: Vec<&str>,
    ) -> Result<Meta> {
        let counts =
            if meta_rooms.is_empty() { HashMap::new() } else { queries::member_counts(client, &meta_rooms).await? };
        let hero_ids =
            if meta_rooms.is_empty() { HashMap::new() } else { queries::heroes(client, &meta_rooms, user).await? };
        let heroes = self.hero_profiles(client, &hero_ids).await?;
        Ok(Meta { rooms: meta_rooms.iter().map(|r| r.to_string()).collect(), counts, heroes })
    }

    /// Display names and avatars of each room's heroes, from their member events.
    async fn hero_profiles(
        &self,
        client: &queries::Client,
        ids: &HashMap<String, Option<Vec<String>>>,
    ) -> Result<HashMap<String, Vec<Hero>>> {
        let rooms: Vec<&str> = ids.iter().filter(|(_, h)| h.is_some()).map(|(r, _)| r.as_str()).collect();
        let mut wanted = super::queries::Wanted::default();
        wanted.types.insert(MEMBER.to_owned());
        wanted.members = ids.values().flatten().flatten().cloned().collect::<HashSet<_>>();
        let mut members = super::queries::current_state(client, &rooms, &wanted).await?;
        let mut out = HashMap::new();
        for room in rooms {
            let events = members.remove(room).unwrap_or_default();
            let heroes = ids[room]
                .iter()
                .flatten()
                .filter_map(|user| {
                    let mut hero = Hero::new(OwnedUserId::try_from(user.as_str()).ok()?);
                    if let Some(e) = events.iter().find(|e| e.state_key.as_deref() == Some(user.as_str())) {
                        hero.name = content_str(e, "displayname");
                        hero.avatar = content_str(e, "avatar_url").map(OwnedMxcUri::from);
                    }
                    Some(hero)
                })
                .collect();
            out.insert(room.to_owned(), heroes);
        }
        Ok(out)
    }
}

pub(crate) fn content_str(e: &EventRow, key: &str) -> Option<String> {
    let content: Value = serde_json::from_str(&e.content).ok()?;
    content[key].as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}
