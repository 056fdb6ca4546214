//! Presence: `online`, `unavailable` or `offline`, a status message, and when the user was
//! last active. Users see the presence of the users they share a room with. Activity from
//! `/sync` is written at most once a minute, and announced only when it changes what others
//! see (a user becoming active again); users who stop syncing go offline.

use serde_json::{Value, json};
use trellis_bus::Channel;
use trellis_core::{Error, Result, Stream, time::now_ms};
use trellis_proto::sync::{Ack, GetPresenceRequest, PresenceResponse, SetPresenceRequest};

use crate::{SyncWorker, access, streams::next_position};

/// Activity refreshes closer together than this are not written.
const ACTIVITY_WRITE_INTERVAL_MS: i64 = 60_000;
/// A user counts as currently active this long after their last activity.
const CURRENTLY_ACTIVE_MS: i64 = 5 * 60_000;
/// Users whose clients stopped syncing this long ago are offline.
const OFFLINE_AFTER_MS: i64 = 10 * 60_000;

const GET: &str = "SELECT state, status_msg, last_active_ts, currently_active FROM presence WHERE user_id = $1";
const SHARE_ROOM: &str = "SELECT 1 FROM memberships a JOIN memberships b ON a.room_id = b.room_id \
     WHERE a.user_id = $1 AND b.user_id = $2 AND a.membership = 'join' AND b.membership = 'join' LIMIT 1";
const LOCK: &str = "SELECT state, status_msg, last_active_ts FROM presence WHERE user_id = $1 FOR UPDATE";
const UPSERT: &str = "INSERT INTO presence (user_id, state, status_msg, last_active_ts, currently_active, pos) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (user_id) DO UPDATE SET state = EXCLUDED.state, status_msg = EXCLUDED.status_msg, \
     last_active_ts = EXCLUDED.last_active_ts, currently_active = EXCLUDED.currently_active, pos = EXCLUDED.pos";
/// A newer activity time that is not news (see `set_presence`): no stream position.
const TOUCH: &str = "UPDATE presence SET last_active_ts = $2 WHERE user_id = $1 AND last_active_ts < $2";
const GONE_QUIET: &str = "SELECT user_id FROM presence WHERE state <> 'offline' AND last_active_ts < $1 LIMIT 500";
const GO_OFFLINE: &str = "UPDATE presence SET state = 'offline', currently_active = false, pos = $2 \
     WHERE user_id = ANY($1) AND state <> 'offline' AND last_active_ts < $3 RETURNING user_id";
/// Presence of everyone sharing a joined room with `$1` (themself included), changed in
/// `($2, $3]`.
const CHANGED: &str = "SELECT user_id, state, status_msg, last_active_ts, currently_active FROM presence \
     WHERE pos > $2 AND pos <= $3 AND user_id IN (SELECT b.user_id FROM memberships a JOIN memberships b \
     ON a.room_id = b.room_id WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership = 'join' \
     UNION SELECT $1)";

const CURRENT_OF: &str =
    "SELECT user_id, state, status_msg, last_active_ts, currently_active FROM presence WHERE user_id = ANY($1)";

fn valid_state(s: &str) -> Result<()> {
    match s {
        "online" | "offline" | "unavailable" => Ok(()),
        _ => Err(Error::invalid_param("presence must be online, offline or unavailable")),
    }
}

impl SyncWorker {
    pub(crate) async fn get_presence(&self, req: GetPresenceRequest) -> Result<PresenceResponse> {
        ruma::UserId::parse(&req.user_id).map_err(|_| Error::invalid_param("invalid user ID"))?;
        let client = self.pool.get().await?;
        if req.requester != req.user_id
            && client.query_opt(SHARE_ROOM, &[&req.requester, &req.user_id]).await?.is_none()
        {
            return Err(Error::forbidden("You do not share a room with this user"));
        }
        let now = now_ms();
        Ok(match client.query_opt(GET, &[&req.user_id]).await? {
            Some(row) => {
                let last: i64 = row.get(2);
                PresenceResponse {
                    presence: row.get(0),
                    status_msg: row.get(1),
                    last_active_ago: Some((now - last).max(0) as u64),
                    currently_active: row.get::<_, bool>(3) && now - last < CURRENTLY_ACTIVE_MS,
                }
            }
            None => PresenceResponse { presence: "offline".into(), ..Default::default() },
        })
    }

    pub(crate) async fn set_presence(&self, req: SetPresenceRequest) -> Result<Ack> {
        access::own(&req.requester, &req.user_id)?;
        valid_state(&req.presence)?;
        let now = now_ms();
        if req.from_sync
            && let Some(seen) = self.presence_seen.get(&req.user_id)
            && seen.0 == req.presence
            && now - seen.1 < ACTIVITY_WRITE_INTERVAL_MS
        {
            return Ok(Ack {});
        }
        let mut client = self.pool.get().await?;
        let previous = client.query_opt(GET, &[&req.user_id]).await?;
        if req.from_sync
            && let Some(row) = &previous
        {
            // A sync only refreshes activity: skip it while the state holds and the last
            // write is recent.
            let (state, last, active): (String, i64, bool) = (row.get(0), row.get(2), row.get(3));
            if state == req.presence && now - last < ACTIVITY_WRITE_INTERVAL_MS {
                self.presence_seen.insert(req.user_id.clone(), (state, last));
                return Ok(Ack {});
            }
            // Still online and currently active: what others see does not change, so the
            // newer activity is kept for expiry and later reads but not announced (as Synapse
            // does). Announcing it would take a presence position and wake every long-poll of
            // every room the user is in, once a minute per syncing user.
            if state == req.presence && state == "online" && active && now - last < CURRENTLY_ACTIVE_MS {
                client.execute(TOUCH, &[&req.user_id, &now]).await?;
                self.presence_seen.insert(req.user_id.clone(), (state, now));
                return Ok(Ack {});
            }
        }
        let tx = client.transaction().await?;
        let pos = next_position(&tx, Stream::Presence).await?;
        let locked = tx.query_opt(LOCK, &[&req.user_id]).await?;
        let status = match (&req.status_msg, req.from_sync, &locked) {
            (Some(msg), _, _) => Some(msg.clone()),
            // A sync keeps the status message the user set.
            (None, true, Some(row)) => row.get(1),
            (None, _, _) => None,
        };
        let active = req.presence == "online";
        tx.execute(UPSERT, &[&req.user_id, &req.presence, &status, &now, &active, &pos]).await?;
        tx.commit().await?;
        self.presence_seen.insert(req.user_id.clone(), (req.presence.clone(), now));
        self.announce_presence(&client, &[req.user_id], pos).await?;
        Ok(Ack {})
    }

    /// Reading a sync stream marks the user with the presence their client asks for (`""`:
    /// online; spec: `set_presence`), unless that is `offline`. Throttled (see
    /// `set_presence`): usually it costs nothing.
    pub(crate) async fn mark_syncing(&self, user: &str, set_presence: &str) -> Result<()> {
        let presence = if set_presence.is_empty() { "online" } else { set_presence };
        if presence != "offline" {
            let mark = SetPresenceRequest {
                requester: user.to_owned(),
                user_id: user.to_owned(),
                presence: presence.to_owned(),
                status_msg: None,
                from_sync: true,
            };
            self.set_presence(mark).await?;
        }
        Ok(())
    }

    /// Marks users who stopped syncing offline; returns how many.
    pub(crate) async fn expire_presence(&self) -> Result<usize> {
        let cutoff = now_ms() - OFFLINE_AFTER_MS;
        let mut client = self.pool.get().await?;
        let quiet: Vec<String> = client.query(GONE_QUIET, &[&cutoff]).await?.iter().map(|r| r.get(0)).collect();
        if quiet.is_empty() {
            return Ok(0);
        }
        let tx = client.transaction().await?;
        let pos = next_position(&tx, Stream::Presence).await?;
        let gone: Vec<String> =
            tx.query(GO_OFFLINE, &[&quiet, &pos, &cutoff]).await?.iter().map(|r| r.get(0)).collect();
        tx.commit().await?;
        self.announce_presence(&client, &gone, pos).await?;
        Ok(gone.len())
    }

    /// Presence is news for the user and for every room they are in.
    async fn announce_presence(&self, client: &deadpool_postgres::Client, users: &[String], pos: i64) -> Result<()> {
        let mut channels = Vec::new();
        for user in users {
            channels.push(Channel::User(user.clone()));
            for room in access::joined_rooms(client, user).await? {
                let c = Channel::Room(room);
                if !channels.contains(&c) {
                    channels.push(c);
                }
            }
        }
        self.announce(&channels, Stream::Presence, pos).await;
        Ok(())
    }

    /// `m.presence` events of the users sharing a room with `user`, changed in
    /// `(since, upto]` (everyone's current presence when `since` is `None`).
    pub(crate) async fn presence_events(
        &self,
        client: &deadpool_postgres::Client,
        user: &str,
        since: Option<i64>,
        upto: i64,
    ) -> Result<Vec<Value>> {
        let stmt = client.prepare_cached(CHANGED).await?;
        let now = now_ms();
        let mut out = Vec::new();
        for row in client.query(&stmt, &[&user, &since.unwrap_or(-1), &upto]).await? {
            out.push(PresenceRow::from_row(&row).event(now));
        }
        Ok(out)
    }
}

impl SyncWorker {
    /// Puts the current presence of `users` (passing `filter`) in `body`, in place of any
    /// change of theirs it holds.
    pub(crate) async fn add_presence(
        &self,
        client: &deadpool_postgres::Client,
        filter: &ruma::api::client::filter::Filter,
        users: &std::collections::HashSet<String>,
        body: &mut crate::poll::response::SyncBody,
    ) -> Result<()> {
        let current = crate::poll::filters::events(filter, self.current_presence(client, users).await?);
        body.presence.events.retain(|e| {
            let sender =
                serde_json::from_str::<Value>(e.get()).ok().and_then(|v| v["sender"].as_str().map(str::to_owned));
            sender.is_none_or(|s| !users.contains(&s))
        });
        body.presence.events.extend(current.into_iter().map(|e| crate::poll::response::raw(e.to_string())));
        Ok(())
    }

    /// The current `m.presence` events of `users`; a user who never had any is offline.
    pub(crate) async fn current_presence(
        &self,
        client: &deadpool_postgres::Client,
        users: &std::collections::HashSet<String>,
    ) -> Result<Vec<Value>> {
        let list: Vec<&str> = users.iter().map(String::as_str).collect();
        let stmt = client.prepare_cached(CURRENT_OF).await?;
        let now = now_ms();
        let rows: Vec<PresenceRow> = client.query(&stmt, &[&list]).await?.iter().map(PresenceRow::from_row).collect();
        let mut out: Vec<Value> = rows.iter().map(|p| p.event(now)).collect();
        let known: std::collections::HashSet<&str> = rows.iter().map(|p| p.user.as_str()).collect();
        let mut unknown: Vec<&str> = list.into_iter().filter(|u| !known.contains(u)).collect();
        unknown.sort_unstable();
        for user in unknown {
            out.push(json!({ "type": "m.presence", "sender": user, "content": { "presence": "offline" } }));
        }
        Ok(out)
    }
}

/// Users whose presence an incremental sync adds although it did not change (as Synapse):
/// every member of the rooms the user joined since `since` (`fresh`), and whoever joined or
/// was invited to one of the user's rooms since (their member events in the response,
/// `members`); not the user.
pub(crate) async fn joined_since(
    client: &deadpool_postgres::Client,
    user: &str,
    fresh: &[&str],
    members: &[&trellis_storage::events::EventRow],
) -> Result<std::collections::HashSet<String>> {
    let mut out = joining(members.iter().copied(), user);
    out.extend(crate::queries::joined_members(client, fresh).await?.into_iter().filter(|m| m != user));
    Ok(out)
}

/// Whoever `members` (events of any type) show joining or invited, but `user`.
pub(crate) fn joining<'a>(
    members: impl Iterator<Item = &'a trellis_storage::events::EventRow>,
    user: &str,
) -> std::collections::HashSet<String> {
    members
        .filter(|e| e.kind == "m.room.member" && e.state_key.as_deref() != Some(user))
        .filter(|e| {
            matches!(trellis_storage::visibility::membership_of(&e.content).as_deref(), Some("join" | "invite"))
        })
        .filter_map(|e| e.state_key.clone())
        .collect()
}

/// One user's stored presence.
pub(crate) struct PresenceRow {
    pub user: String,
    pub state: String,
    pub status: Option<String>,
    pub last_active: i64,
    pub active: bool,
}

impl PresenceRow {
    /// From a row starting `user_id, state, status_msg, last_active_ts, currently_active`.
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> PresenceRow {
        PresenceRow {
            user: row.get(0),
            state: row.get(1),
            status: row.get(2),
            last_active: row.get(3),
            active: row.get(4),
        }
    }

    /// The `m.presence` event, with ages as of `now`.
    pub(crate) fn event(&self, now: i64) -> Value {
        let mut content = json!({
            "presence": self.state,
            "last_active_ago": (now - self.last_active).max(0),
            "currently_active": self.active && now - self.last_active < CURRENTLY_ACTIVE_MS,
        });
        if let Some(s) = &self.status {
            content["status_msg"] = json!(s);
        }
        json!({ "type": "m.presence", "sender": self.user, "content": content })
    }
}
