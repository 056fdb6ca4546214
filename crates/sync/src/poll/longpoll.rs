//! The long-poll: subscribe to the user's channels, then read the current positions (so no
//! wake-up can fall between the two), answer at once if anything is new, else wait for a
//! wake-up, the timeout or shutdown. While the bus is degraded, poll PostgreSQL instead.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ruma::api::client::filter::FilterDefinition;
use trellis_bus::{Channel, Subscription};
use trellis_core::{Error, Result, Stream, StreamToken};
use trellis_proto::sync::{SyncRequest, SyncResponse};

use crate::{SyncWorker, poll::filters, poll::response::SyncBody, poll::steps::Request, queries, streams};

/// One long-poll's parameters.
pub(crate) struct Poll<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub since: Option<StreamToken>,
    pub timeout: Duration,
    pub full_state: bool,
    pub filter: &'a FilterDefinition,
}

pub(crate) fn parse_since(since: Option<&str>) -> Result<Option<StreamToken>> {
    match since.filter(|s| !s.is_empty()) {
        Some(s) => Ok(Some(s.parse::<StreamToken>().map_err(|_| Error::invalid_param("invalid since token"))?)),
        None => Ok(None),
    }
}

impl SyncWorker {
    // Debug level: a span per poll is a measurable share of a woken poll's cost.
    #[tracing::instrument(level = "debug", skip_all, fields(user = %req.user_id, since = ?req.since))]
    pub(crate) async fn long_poll(&self, req: SyncRequest) -> Result<SyncResponse> {
        let started = Instant::now();
        self.mark_syncing(&req.user_id, &req.set_presence).await?;
        let filter = self.resolve_filter(&req.user_id, req.filter.as_deref()).await?;
        let since = parse_since(req.since.as_deref())?;
        let poll = Poll {
            user_id: &req.user_id,
            device_id: &req.device_id,
            since,
            timeout: Duration::from_millis(req.timeout_ms),
            full_state: req.full_state,
            filter: &filter,
        };
        let body = self.wait_for_news(&poll).await?;
        self.last_answer_ms.store(self.uptime_ms(), std::sync::atomic::Ordering::Relaxed);
        metrics::histogram!("trellis_sync_duration_seconds", "kind" => if since.is_none() { "initial" } else { "incremental" })
            .record(started.elapsed().as_secs_f64());
        Ok(SyncResponse { body_json: serde_json::to_string(&body)? })
    }

    /// Computes the response for `poll`, waiting up to its timeout for something new.
    ///
    /// Each round first asks the bus hub what changed on the user's channels since the last
    /// position known to hold nothing new (`checked`): nothing → keep waiting without touching
    /// PostgreSQL; only new room events → the fast path; anything else, or nothing known → the
    /// exact computation from PostgreSQL.
    pub(crate) async fn wait_for_news(&self, poll: &Poll<'_>) -> Result<SyncBody> {
        let _open = OpenPoll::count();
        let deadline = tokio::time::Instant::now() + poll.timeout.min(self.settings.max_timeout);
        let (mut sub, mut memberships) = self.subscribe(poll).await?;
        // Room-channel changes of streams the filter shuts out are no news for this poll, and
        // do not even wake it.
        let ignored = filters::ignored_streams(poll.filter);
        sub.ignore_in_rooms(&ignored);
        // Whether the subscription listens to exactly the rooms of `memberships` (a room left
        // during the poll stays subscribed until the poll ends).
        let mut exact = true;
        let request = Request {
            user_id: poll.user_id,
            device_id: poll.device_id,
            since: poll.since,
            full_state: poll.full_state,
            filter: poll.filter,
        };
        let incremental = poll.since.is_some() && !poll.full_state;
        let mut round = Rounds { checked: poll.since, ..Default::default() };
        loop {
            let news = round.checked.map(|c| {
                let mut news = sub.news_since(&c);
                news.changes.retain(|(c, s, _)| !(matches!(c, Channel::Room(_)) && ignored.contains(s)));
                news
            });
            tracing::debug!(checked = ?round.checked, news = ?news, "long-poll round");
            // Woken only by receipts, typing or presence: gather more of them for a moment
            // (an event still answers at once).
            if round.waited
                && news.as_ref().is_some_and(|n| incremental && n.known && only_ephemeral(n))
                && self.gather_ephemeral(&sub, &mut round.hold_until, deadline).await
            {
                continue;
            }
            let user_changed = news
                .as_ref()
                .is_none_or(|n| !n.known || n.changes.iter().any(|(c, _, _)| matches!(c, Channel::User(_))));
            let answer = match news.as_ref().filter(|n| incremental && n.known) {
                Some(news) => self.answer_from_news(&request, news, &memberships, &sub, &mut round).await?,
                None => {
                    if incremental && news.is_some() {
                        crate::poll::fast::slow("not_known");
                    }
                    Answer::Exact
                }
            };
            let body = match answer {
                Answer::Again => continue,
                Answer::Body(body) => Some(*body),
                Answer::Nothing => None,
                Answer::Exact => {
                    if user_changed && round.checked.is_some() {
                        // Memberships may have changed: read them again before computing.
                        memberships = self.memberships(&sub, poll.user_id, false).await?;
                        listen_to_rooms(&mut sub, &memberships).await?;
                        exact = false;
                    }
                    round.computations += 1;
                    Some(self.compute_now(&sub, &request, &memberships).await?)
                }
            };
            let expired = tokio::time::Instant::now() >= deadline;
            if let Some(body) = body {
                if !incremental || !body.is_empty() || expired || self.shutdown.is_triggered() {
                    return Ok(self.answer(poll, sub, memberships, exact, body, round.computations));
                }
                // Nothing for the client up to the body's position: ask about changes after it.
                round.checked = Some(body.next_batch.parse()?);
                round.hold_until = None;
            } else if expired || self.shutdown.is_triggered() {
                // "Nothing new" is only said after asking PostgreSQL: a change can be committed
                // while its wake-up is still on its way to this process.
                let body = self.compute_now(&sub, &request, &memberships).await?;
                return Ok(self.answer(poll, sub, memberships, exact, body, round.computations + 1));
            }
            self.wait_once(&sub, deadline).await;
            round.waited = true;
        }
    }

    /// The poll's subscription: the device's previous poll may have left its own, registered
    /// all along; else a new one on the user's channel. Subscribe first, read second: then the
    /// user's memberships, and the subscription made to listen to exactly their rooms.
    async fn subscribe(&self, poll: &Poll<'_>) -> Result<(Subscription, Arc<Vec<queries::Membership>>)> {
        let kept = self.parked.take(poll.user_id, poll.device_id);
        let (mut sub, listened) = match kept {
            Some(parked) => {
                // What it was woken for meanwhile shows in the news read below.
                parked.sub.clear_wakeups();
                (parked.sub, Some(parked.rooms))
            }
            None => (self.bus.subscribe(&[Channel::User(poll.user_id.to_owned())]).await?, None),
        };
        // An initial sync reads memberships afresh: forgetting a room changes no stream.
        let memberships = self.memberships(&sub, poll.user_id, poll.since.is_none()).await?;
        match listened {
            Some(rooms) if Arc::ptr_eq(&rooms, &memberships) => {}
            Some(_) => {
                // The user's rooms changed since it was parked: a fresh subscription (made
                // before the kept one is dropped, so the user's channel stays watched).
                sub = self.bus.subscribe(&[Channel::User(poll.user_id.to_owned())]).await?;
                listen_to_rooms(&mut sub, &memberships).await?;
            }
            None => listen_to_rooms(&mut sub, &memberships).await?,
        }
        Ok((sub, memberships))
    }

    /// Holds a poll woken only by receipts, typing or presence until more of them come or
    /// `ephemeral_batch` has passed since the first; whether it held (false: answer now).
    async fn gather_ephemeral(
        &self,
        sub: &Subscription,
        hold_until: &mut Option<tokio::time::Instant>,
        deadline: tokio::time::Instant,
    ) -> bool {
        let until = *hold_until.get_or_insert_with(|| tokio::time::Instant::now() + self.settings.ephemeral_batch);
        let until = until.min(deadline);
        if tokio::time::Instant::now() >= until || self.shutdown.is_triggered() {
            return false;
        }
        tokio::select! {
            _ = sub.wait() => {}
            _ = tokio::time::sleep_until(until) => {}
            _ = self.shutdown.wait() => {}
        }
        true
    }

    /// What the hub's `news` lets this round answer: nothing new, the fast path's body, or
    /// (the hub still behind this request, or the fast path unable to vouch) the exact path.
    async fn answer_from_news(
        &self,
        request: &Request<'_>,
        news: &trellis_bus::News,
        memberships: &[queries::Membership],
        sub: &Subscription,
        round: &mut Rounds,
    ) -> Result<Answer> {
        if news.changes.is_empty() {
            return Ok(Answer::Nothing);
        }
        if !round.waited && !self.hub_caught_up(news, &mut round.caught_up_to).await? {
            // Wait (briefly) for the wake-ups of what was committed before this request, then
            // look again; past the bound, PostgreSQL answers.
            let goal = round.caught_up_to.unwrap_or_default();
            if let Some(c) = round.checked
                && self.hub_reaches(sub, &c, goal).await
            {
                return Ok(Answer::Again);
            }
            crate::poll::fast::slow("hub_behind");
            return Ok(Answer::Exact);
        }
        match self.compute_fast(request, news, memberships, sub).await? {
            Some(body) => {
                round.computations += 1;
                Ok(Answer::Body(Box::new(body)))
            }
            None => Ok(Answer::Exact),
        }
    }

    /// The exact path at the positions PostgreSQL has committed now.
    async fn compute_now(
        &self,
        sub: &Subscription,
        request: &Request<'_>,
        memberships: &[queries::Membership],
    ) -> Result<SyncBody> {
        let (client, pos) = self.positions_now(sub).await?;
        self.compute(&client, request, pos, memberships).await
    }

    /// Every stream's committed position, which `sub`'s news is then told holds nothing new
    /// unheard.
    async fn positions_now(&self, sub: &Subscription) -> Result<(queries::Client, StreamToken)> {
        let client = self.pool.get().await?;
        let pos = streams::current(&client).await?;
        sub.baseline(&pos);
        Ok((client, pos))
    }

    /// Answers the poll with `body`, parking its subscription for the device's next poll.
    fn answer(
        &self,
        poll: &Poll<'_>,
        sub: Subscription,
        memberships: Arc<Vec<queries::Membership>>,
        exact: bool,
        body: SyncBody,
        computations: u32,
    ) -> SyncBody {
        metrics::histogram!("trellis_sync_computations").record(f64::from(computations));
        self.park(poll, sub, memberships, exact);
        body
    }

    /// Waits for a wake-up of `sub`, the deadline or shutdown, whichever comes first (while the
    /// bus is degraded, at most `degraded_poll`: wake-ups may be lost then). Whether `sub` woke
    /// it.
    pub(crate) async fn wait_once(&self, sub: &Subscription, deadline: tokio::time::Instant) -> bool {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let wait = if self.bus.is_healthy() { left } else { self.settings.degraded_poll.min(left) };
        tokio::select! {
            _ = sub.wait() => true,
            _ = tokio::time::sleep(wait) => false,
            _ = self.shutdown.wait() => false,
        }
    }

    /// Keeps an answered poll's subscription for the device's next poll, when it listens to
    /// exactly the rooms of `memberships` (and the worker is not shutting down).
    fn park(&self, poll: &Poll<'_>, sub: Subscription, memberships: Arc<Vec<queries::Membership>>, exact: bool) {
        if exact && !self.shutdown.is_triggered() {
            self.parked.park(poll.user_id, poll.device_id, crate::poll::parked::Parked { sub, rooms: memberships });
        }
    }

    /// Whether every event committed before this request has reached this worker's hub. A
    /// request answered at once (not woken) must show what was sent before it, even when the
    /// wake-ups of those events are still on their way.
    /// PostgreSQL is asked once per request (in a read shared with the requests arriving at
    /// the same moment); the position it gave is kept in `goal`.
    pub(crate) async fn hub_caught_up(&self, news: &trellis_bus::News, goal: &mut Option<i64>) -> Result<bool> {
        let pos = match *goal {
            Some(pos) => pos,
            None => {
                let pos = self.positions.current().await?.events;
                *goal = Some(pos);
                pos
            }
        };
        Ok(news.events_complete >= pos)
    }

    /// The user's memberships: from this worker's cache while the bus vouches that the user's
    /// channel saw no change since they were read, else from PostgreSQL.
    async fn memberships(&self, sub: &Subscription, user: &str, fresh: bool) -> Result<Arc<Vec<queries::Membership>>> {
        if !fresh && let Some((list, as_of)) = self.caches.memberships.get(user) {
            let news = sub.news_since(&as_of);
            let user_changed = news.changes.iter().any(|(c, _, _)| matches!(c, Channel::User(_)));
            if news.known && !user_changed {
                return Ok(list);
            }
        }
        let (client, pos) = self.positions_now(sub).await?;
        let list = Arc::new(queries::memberships(&client, user).await?);
        self.caches.memberships.insert(user.to_owned(), (list.clone(), pos));
        Ok(list)
    }
}

impl SyncWorker {
    /// Waits up to `HUB_WAIT` for this process to have heard every event up to `goal` (its
    /// wake-ups normally follow the commit within a millisecond or two). A batch that touches
    /// none of this worker's channels never reaches it, so the bus is asked to catch up.
    pub(crate) async fn hub_reaches(&self, sub: &Subscription, checked: &StreamToken, goal: i64) -> bool {
        let until = tokio::time::Instant::now() + HUB_WAIT;
        loop {
            if sub.news_since(checked).events_complete >= goal {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            let _ = tokio::time::timeout_at(until, self.bus.catch_up()).await;
            if sub.news_since(checked).events_complete >= goal {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Where a long-poll stands between its rounds.
#[derive(Default)]
struct Rounds {
    /// The last position known to hold nothing new for the client.
    checked: Option<StreamToken>,
    /// Responses computed (fast or exact), for `trellis_sync_computations`.
    computations: u32,
    /// Set once the poll has waited: from then on the hub's wake-ups say what is new.
    waited: bool,
    /// Until when a poll woken only by ephemeral news gathers more.
    hold_until: Option<tokio::time::Instant>,
    /// The events position PostgreSQL had announced when this request was checked.
    caught_up_to: Option<i64>,
}

/// What a round's news lets it do.
enum Answer {
    /// Nothing new: keep waiting.
    Nothing,
    /// The fast path's response.
    Body(Box<SyncBody>),
    /// Only PostgreSQL can answer exactly.
    Exact,
    /// The hub caught up: look at the news again.
    Again,
}

const HUB_WAIT: Duration = Duration::from_millis(100);

/// Whether every change is a receipt, typing or presence change in a room.
fn only_ephemeral(news: &trellis_bus::News) -> bool {
    !news.changes.is_empty()
        && news.changes.iter().all(|(c, s, _)| {
            matches!(c, Channel::Room(_)) && matches!(s, Stream::Receipts | Stream::Typing | Stream::Presence)
        })
}

/// Listens on the channel of every room the user is joined to.
async fn listen_to_rooms(sub: &mut Subscription, memberships: &[queries::Membership]) -> Result<()> {
    let rooms: Vec<Channel> =
        memberships.iter().filter(|m| m.membership == "join").map(|m| Channel::Room(m.room_id.clone())).collect();
    sub.add(&rooms).await
}

/// Counts a long-poll in `trellis_sync_open_longpolls` while it is open on this worker (what
/// a horizontal autoscaler of sync workers watches). Added and taken away rather than set, so
/// that several workers in one process add up.
pub(crate) struct OpenPoll;

impl OpenPoll {
    pub(crate) fn count() -> OpenPoll {
        metrics::gauge!("trellis_sync_open_longpolls").increment(1.0);
        OpenPoll
    }
}

impl Drop for OpenPoll {
    fn drop(&mut self) {
        metrics::gauge!("trellis_sync_open_longpolls").decrement(1.0);
    }
}
