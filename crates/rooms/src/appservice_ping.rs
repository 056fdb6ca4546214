//! `POST /_matrix/client/v1/appservice/{appserviceId}/ping` (spec 1.7): an application service
//! asks the homeserver to call its `POST /_matrix/app/v1/ping`, to check that the two reach
//! each other with the right tokens; the answer is how long the call took.

use std::time::Instant;

use ruma::{OwnedTransactionId, api::OutgoingRequestExt, api::appservice::ping::send_ping};
use trellis_core::{Error, ErrorCode, Result};
use trellis_proto::rooms::{PingAppserviceRequest, PingAppserviceResponse};

use crate::Rooms;

/// Longest body of a failed ping repeated to the appservice (`body` of `M_BAD_STATUS`).
const MAX_BODY: usize = 4096;

impl Rooms {
    #[tracing::instrument(skip_all, fields(appservice = %req.appservice_id))]
    pub(crate) async fn ping_appservice(&self, req: PingAppserviceRequest) -> Result<PingAppserviceResponse> {
        if req.requester_appservice_id != req.appservice_id {
            return Err(Error::forbidden("Only an application service can ping itself, with its own as_token."));
        }
        let appservice = self
            .settings
            .appservices
            .by_id(&req.appservice_id)
            .ok_or_else(|| Error::forbidden("No such application service."))?;
        let Some(url) = appservice.registration.url.as_deref() else {
            return Err(Error::new(ErrorCode::UrlNotSet, "The application service has no URL."));
        };
        let mut ping = send_ping::v1::Request::new();
        ping.transaction_id = req.transaction_id.map(OwnedTransactionId::from);
        let request = ping
            .try_into_http_request::<Vec<u8>>(url.trim_end_matches('/'), &appservice.registration.hs_token, ())
            .map_err(|e| Error::internal(format!("building the ping: {e}")))?;
        let request = reqwest::Request::try_from(request).map_err(|e| Error::internal(format!("ping request: {e}")))?;
        let started = Instant::now();
        let answer = match self.appservice_http.client().execute(request).await {
            Ok(answer) => answer,
            Err(e) if e.is_timeout() => {
                return Err(Error::new(ErrorCode::ConnectionTimeout, "The application service took too long."));
            }
            Err(e) => {
                tracing::info!(error = %e, "ping: the application service is unreachable");
                return Err(Error::new(ErrorCode::ConnectionFailed, "The application service could not be reached."));
            }
        };
        let duration_ms = started.elapsed().as_millis() as i64;
        let status = answer.status();
        if !status.is_success() {
            let mut body = answer.text().await.unwrap_or_default();
            body.truncate(body.floor_char_boundary(MAX_BODY));
            return Err(Error::new(ErrorCode::BadStatus, format!("Ping returned status {}", status.as_u16()))
                .with_field("status", status.as_u16())
                .with_field("body", body));
        }
        Ok(PingAppserviceResponse { duration_ms })
    }
}
