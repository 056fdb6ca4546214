//! CAS (`[sso.cas]`, Synapse's `m.login.cas`, `docs/sso.md`): `/login/cas/redirect` and
//! `/login/cas/ticket` (Synapse's endpoints, under r0 and v3; ruma has no types for them),
//! and the service URL the CAS server sends the browser back to. The auth service checks
//! the ticket; this module builds the URLs and renders.

use axum::{
    Router,
    extract::State,
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ruma::api::client::session::get_login_types::v3::LoginType;
use serde::Deserialize;
use trellis_core::{Error, ratelimit::Action, sso::CAS_IDP};
use trellis_proto::auth::CasTicketRequest;

use crate::{
    AppState,
    error::ApiError,
    extract::Origin,
    oauth::{pages::failure, web::base_url},
};

/// Where CAS sends the browser back (r0, as Synapse names it in the service URL).
const TICKET: &str = "/_matrix/client/r0/login/cas/ticket";

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for version in ["r0", "v3"] {
        router = router
            .route(&format!("/_matrix/client/{version}/login/cas/redirect"), get(cas_redirect_route))
            .route(&format!("/_matrix/client/{version}/login/cas/ticket"), get(cas_ticket_route));
    }
    router
}

/// `m.login.cas` as `GET /login` lists it.
pub fn login_type() -> Result<LoginType, ApiError> {
    LoginType::new("m.login.cas", Default::default()).map_err(|e| Error::internal(e).into())
}

/// All but RFC 3986's unreserved characters are percent-encoded (so the service URL is the
/// same string every time it is built, as CAS compares it).
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn escape(s: &str) -> String {
    utf8_percent_encode(s, RESERVED).to_string()
}

/// The ticket URL CAS sends the browser back to: with the client's `redirectUrl` for a
/// login, with the UIA `session` for the `m.login.sso` stage.
pub fn service_url(base: &str, purpose: &str, value: &str) -> Result<String, Error> {
    match purpose {
        "login" => Ok(format!("{base}{TICKET}?redirectUrl={}", escape(value))),
        "uia" => Ok(format!("{base}{TICKET}?session={}", escape(value))),
        _ => Err(Error::invalid_param("CAS signs in classic clients only")),
    }
}

#[derive(Deserialize, Default)]
struct CasQuery {
    #[serde(rename = "redirectUrl")]
    redirect_url: Option<String>,
    ticket: Option<String>,
    session: Option<String>,
}

fn query(uri: &Uri) -> CasQuery {
    serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default()
}

fn not_configured() -> Response {
    ApiError(Error::unrecognized("CAS is not configured").with_status(404)).into_response()
}

/// # `GET /_matrix/client/v3/login/cas/redirect?redirectUrl=...`
async fn cas_redirect_route(State(s): State<AppState>, origin: Origin, uri: Uri) -> Response {
    if !s.settings.cas_enabled {
        return not_configured();
    }
    let Some(redirect_url) = query(&uri).redirect_url else {
        return ApiError(Error::missing_param("Missing redirectUrl")).into_response();
    };
    match crate::sso::start(&s, &origin, CAS_IDP.into(), redirect_url, "login").await {
        Ok((location, _)) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// # `GET /_matrix/client/v3/login/cas/ticket?ticket=...&redirectUrl=...` (or `&session=...`)
async fn cas_ticket_route(State(s): State<AppState>, origin: Origin, uri: Uri) -> Response {
    if !s.settings.cas_enabled {
        return not_configured();
    }
    let q = query(&uri);
    let base = base_url(&s, origin.host.as_deref());
    let service = match (&q.session, &q.redirect_url) {
        (Some(session), _) => service_url(&base, "uia", session),
        (None, Some(redirect)) => service_url(&base, "login", redirect),
        (None, None) => Err(Error::missing_param("Missing redirectUrl or session")),
    };
    let req = service.map(|service_url| CasTicketRequest {
        ticket: q.ticket.unwrap_or_default(),
        service_url,
        redirect_url: q.redirect_url,
        session: q.session,
    });
    let answer = match (req, s.limit(Action::Login, &origin.ip_or_unknown()).await) {
        (Ok(req), Ok(())) => s.services.auth.cas_ticket(req).await,
        (Err(e), _) | (_, Err(ApiError(e))) => Err(e),
    };
    match answer {
        Ok(out) => crate::sso::finish(&s, out),
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_escape_all_but_unreserved() {
        let url = service_url("https://hs", "login", "https://client?p=http%3A%2F%2Fserver").unwrap();
        assert_eq!(
            url,
            "https://hs/_matrix/client/r0/login/cas/ticket?redirectUrl=https%3A%2F%2Fclient%3Fp%3Dhttp%253A%252F%252Fserver"
        );
        assert_eq!(
            service_url("https://hs", "uia", "a b~").unwrap(),
            "https://hs/_matrix/client/r0/login/cas/ticket?session=a%20b~"
        );
        assert!(service_url("https://hs", "oauth", "/x").is_err());
    }
}
