//! Asking application services: about local users invited before they exist, and about
//! aliases nobody has created yet (an alias in an
//! appservice's namespace that does not exist is looked up at the appservice with
//! `GET /_matrix/app/v1/rooms/{roomAlias}`, which may create it before it answers 200), and
//! the third-party lookups of `thirdparty.rs`. Requests are built with ruma's appservice types
//! and carry the appservice's `hs_token`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use ruma::api::{
    OutgoingRequest, OutgoingRequestExt,
    appservice::query::{query_room_alias, query_user_id},
};
use serde_json::Value;
use trellis_core::{Result, appservice::Appservice};

use crate::Rooms;

/// How long an appservice may take to answer a query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an appservice's protocol description is reused.
const PROTOCOL_TTL: Duration = Duration::from_secs(300);

/// The HTTP client for appservices and the protocol descriptions they gave.
pub(crate) struct Http {
    client: reqwest::Client,
    protocols: Mutex<HashMap<(String, String), (Instant, Value)>>,
}

impl Default for Http {
    fn default() -> Http {
        let client = reqwest::Client::builder().timeout(QUERY_TIMEOUT).build().unwrap_or_default();
        Http { client, protocols: Mutex::default() }
    }
}

impl Http {
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request` to `appservice`: the JSON of a 2xx answer, `None` for anything else
    /// (an appservice that is down or knows nothing must not fail the client's request).
    pub(crate) async fn ask<R>(&self, appservice: &Appservice, request: R) -> Option<Value>
    where
        R: OutgoingRequest + OutgoingRequestExt,
        for<'a> R::Authentication: ruma::api::auth_scheme::AuthScheme<Input<'a> = &'a str>,
        for<'a> R::PathBuilder: ruma::api::path_builder::PathBuilder<Input<'a> = ()>,
    {
        let url = appservice.registration.url.as_deref()?.trim_end_matches('/');
        let request = request.try_into_http_request::<Vec<u8>>(url, &appservice.registration.hs_token, ()).ok()?;
        let request = reqwest::Request::try_from(request).ok()?;
        match self.client.execute(request).await {
            Ok(answer) if answer.status().is_success() => answer.json().await.ok(),
            Ok(answer) => {
                tracing::debug!(appservice = appservice.id(), status = %answer.status(), "appservice declined a query");
                None
            }
            Err(e) => {
                tracing::warn!(appservice = appservice.id(), error = %e, "asking an appservice failed");
                None
            }
        }
    }

    /// A protocol description given by `appservice` within the last [`PROTOCOL_TTL`].
    pub(crate) fn cached_protocol(&self, appservice: &str, protocol: &str) -> Option<Value> {
        let cache = self.protocols.lock();
        let (at, value) = cache.get(&(appservice.to_owned(), protocol.to_owned()))?;
        (at.elapsed() < PROTOCOL_TTL).then(|| value.clone())
    }

    pub(crate) fn remember_protocol(&self, appservice: &str, protocol: &str, value: Value) {
        self.protocols.lock().insert((appservice.to_owned(), protocol.to_owned()), (Instant::now(), value));
    }
}

const USER_EXISTS: &str = "SELECT 1 FROM users WHERE user_id = $1";

impl Rooms {
    /// Before a local user who does not exist is invited: the appservices whose namespaces
    /// hold them are asked (`GET /_matrix/app/v1/users/{userId}`), and may register them.
    pub(crate) async fn ask_appservices_about_user(&self, user_id: &str) -> Result<()> {
        let interested = self.interested(|a| a.is_interested_in_user(user_id));
        if interested.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        if client.query_opt(&client.prepare_cached(USER_EXISTS).await?, &[&user_id]).await?.is_some() {
            return Ok(());
        }
        let Ok(parsed) = ruma::UserId::parse(user_id) else { return Ok(()) };
        for appservice in interested {
            if self.appservice_http.ask(appservice, query_user_id::v1::Request::new(parsed.clone())).await.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// The appservices `pick` accepts (collected: nothing borrowed lives across an await).
    fn interested(&self, pick: impl Fn(&Appservice) -> bool) -> Vec<&Appservice> {
        self.settings.appservices.all().iter().filter(|a| pick(a)).collect()
    }

    /// The room of a local alias; an unknown alias is first asked of the appservices whose
    /// namespaces hold it.
    pub(crate) async fn resolve_local_alias(&self, alias: &str) -> Result<Option<String>> {
        if let Some(room) = self.alias_room(alias).await? {
            return Ok(Some(room));
        }
        let Ok(parsed) = ruma::RoomAliasId::parse(alias) else { return Ok(None) };
        for appservice in self.interested(|a| a.is_interested_in_alias(alias)) {
            let request = query_room_alias::v1::Request::new(parsed.clone());
            if self.appservice_http.ask(appservice, request).await.is_some()
                && let Some(room) = self.alias_room(alias).await?
            {
                return Ok(Some(room));
            }
        }
        Ok(None)
    }
}
