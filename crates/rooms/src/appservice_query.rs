//! Asking application services about aliases nobody has created yet: an alias in an
//! appservice's namespace that does not exist is looked up at the appservice
//! (`GET /_matrix/app/v1/rooms/{roomAlias}`), which may create it before it answers 200.

use std::time::Duration;

use ruma::api::{OutgoingRequestExt, appservice::query::query_room_alias};
use trellis_core::Result;

use crate::Rooms;

/// How long an appservice may take to answer a query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

impl Rooms {
    /// The room of a local alias; an unknown alias is first asked of the appservices whose
    /// namespaces hold it.
    pub(crate) async fn resolve_local_alias(&self, alias: &str) -> Result<Option<String>> {
        if let Some(room) = self.alias_room(alias).await? {
            return Ok(Some(room));
        }
        let Ok(parsed) = ruma::RoomAliasId::parse(alias) else { return Ok(None) };
        for appservice in self.settings.appservices.all().iter().filter(|a| a.is_interested_in_alias(alias)) {
            let Some(url) = appservice.registration.url.as_deref() else { continue };
            let request = query_room_alias::v1::Request::new(parsed.clone()).try_into_http_request::<Vec<u8>>(
                url.trim_end_matches('/'),
                &appservice.registration.hs_token,
                (),
            );
            let Ok(request) = request.map(reqwest::Request::try_from) else { continue };
            let Ok(request) = request else { continue };
            let client = reqwest::Client::builder().timeout(QUERY_TIMEOUT).build().unwrap_or_default();
            match client.execute(request).await {
                Ok(answer) if answer.status().is_success() => {
                    if let Some(room) = self.alias_room(alias).await? {
                        return Ok(Some(room));
                    }
                }
                Ok(answer) => {
                    tracing::debug!(appservice = appservice.id(), status = %answer.status(), "appservice knows no such alias")
                }
                Err(e) => {
                    tracing::warn!(appservice = appservice.id(), error = %e, "asking an appservice about an alias failed")
                }
            }
        }
        Ok(None)
    }
}
