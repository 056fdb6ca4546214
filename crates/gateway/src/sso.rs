//! Sign-in through upstream OpenID Connect providers (`docs/sso.md`): classic clients'
//! `/login/sso/redirect[/{idpId}]`, the provider's callback, the OAuth pages' provider
//! buttons, and the pages in between (pick a provider; confirm sending a login token to a
//! client). The auth service decides everything; this module carries the state cookie that
//! binds a sign-in to the browser that started it, and renders.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use ruma::api::client::session::{
    get_login_types::v3::{IdentityProvider, SsoLoginType},
    sso_login, sso_login_with_provider,
};
use serde::Deserialize;
use trellis_core::{Error, ratelimit::Action, sso::CAS_IDP};
use trellis_proto::auth::{SsoCallbackRequest, SsoCallbackResponse, SsoStartRequest};

use crate::{
    AppState,
    error::ApiResult,
    extract::{Origin, Ruma},
    html::{esc, page},
    oauth::{
        pages::{failure, safe_continue, see_other},
        web::{SESSION_COOKIE, base_url, cookie, set_cookie},
    },
    response::Rendered,
    router::{RumaRoutes, also_under, paths_of},
};

/// Where providers send the browser back (Synapse's path, so provider registrations made for
/// a Synapse keep working).
pub const CALLBACK: &str = "/_synapse/client/oidc/callback";
/// The cookie holding the state of the sign-in under way (only sent to the callback).
const STATE_COOKIE: &str = "trellis_sso_state";
/// The provider picker for clients that did not name one.
const PICK: &str = "/_trellis/sso/pick";
/// The OAuth login page's provider buttons: `/_trellis/sso/start/{idp_id}?continue=...`.
const START: &str = "/_trellis/sso/start";
/// The `m.login.sso` fallback page's links: `/_trellis/sso/uia/{idp_id}?session=...`.
const UIA: &str = "/_trellis/sso/uia";

pub fn routes() -> Router<AppState> {
    let client = "/_matrix/client/";
    Router::new()
        .ruma_on(also_under(paths_of::<sso_login::v3::Request>(), client, &["r0"]), sso_login_route)
        .ruma_on(
            also_under(paths_of::<sso_login_with_provider::v3::Request>(), client, &["r0"]),
            sso_login_with_provider_route,
        )
        .route(CALLBACK, get(callback_route))
        .route(PICK, get(pick_route))
        .route(&format!("{START}/{{idp_id}}"), get(oauth_start_route))
        .route(&format!("{UIA}/{{idp_id}}"), get(uia_start_route))
}

/// `m.login.sso` as `GET /login` offers it: the providers with their names and icons.
pub fn login_type(providers: &[crate::SsoProvider]) -> SsoLoginType {
    let mut sso = SsoLoginType::new();
    sso.identity_providers = providers
        .iter()
        .map(|p| {
            let mut idp = IdentityProvider::new(p.id.clone(), p.name.clone());
            idp.icon = p.icon.as_deref().map(Into::into);
            idp
        })
        .collect();
    sso
}

/// `/login`'s answer as ruma renders it, less the `null`s ruma writes for a provider's
/// absent `icon` and `brand` (the spec's schema has strings there or nothing, as Synapse).
pub fn without_nulls(
    resp: ruma::api::client::session::get_login_types::v3::Response,
) -> ApiResult<Rendered<ruma::api::client::session::get_login_types::v3::Response>> {
    use ruma::api::OutgoingResponseExt;
    let body = resp.try_into_http_response::<Vec<u8>>().map_err(Error::internal)?.into_body();
    let mut json: serde_json::Value = serde_json::from_slice(&body).map_err(Error::internal)?;
    let flows = json.get_mut("flows").and_then(|f| f.as_array_mut()).into_iter().flatten();
    for idp in flows.filter_map(|f| f.get_mut("identity_providers")?.as_array_mut()).flatten() {
        if let Some(idp) = idp.as_object_mut() {
            idp.retain(|_, v| !v.is_null());
        }
    }
    Ok(Rendered::new(json.to_string()))
}

fn not_configured() -> Error {
    Error::unrecognized("This server signs in through no identity provider").with_status(404)
}

/// Asks the auth service to begin: the provider's URL, and the state cookie to set.
pub(crate) async fn start(
    s: &AppState,
    origin: &Origin,
    idp_id: String,
    redirect_url: String,
    purpose: &str,
) -> Result<(String, Option<HeaderValue>), Error> {
    s.limit(Action::Login, &origin.ip_or_unknown()).await.map_err(|e| e.0)?;
    let base = base_url(s, origin.host.as_deref());
    let callback_url = match idp_id == CAS_IDP {
        true => crate::sso_cas::service_url(&base, purpose, &redirect_url)?,
        false => format!("{base}{CALLBACK}"),
    };
    let req = SsoStartRequest { idp_id, redirect_url, callback_url, purpose: purpose.to_owned() };
    let started = s.services.auth.sso_start(req).await?;
    // CAS keeps no state: its ticket is checked with the CAS server.
    Ok((started.provider_url, (!started.state.is_empty()).then(|| state_cookie(s, &started.state, 600))))
}

fn state_cookie(s: &AppState, state: &str, max_age: u64) -> HeaderValue {
    let secure = s.settings.public_baseurl.as_deref().is_some_and(|b| b.starts_with("https://"));
    let mut value =
        format!("{STATE_COOKIE}={state}; Path=/_synapse/client/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    if secure {
        value.push_str("; Secure");
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// # `GET /_matrix/client/v3/login/sso/redirect`
///
/// With one provider, straight to it; with several, to a page that lists them.
async fn sso_login_route(s: AppState, req: Ruma<sso_login::v3::Request>) -> ApiResult<sso_login::v3::Response> {
    let redirect_url = req.body.redirect_url;
    match s.settings.sso_providers.as_slice() {
        [] => Err(not_configured().into()),
        [only] => {
            let (location, cookie) = start(&s, &req.origin, only.id.clone(), redirect_url, "login").await?;
            let mut out = sso_login::v3::Response::new(location);
            out.cookie = cookie.and_then(|c| c.to_str().ok().map(str::to_owned));
            Ok(out)
        }
        _ => {
            let query = serde_urlencoded::to_string([("redirectUrl", &redirect_url)]).unwrap_or_default();
            Ok(sso_login::v3::Response::new(format!("{}{PICK}?{query}", base_url(&s, req.origin.host.as_deref()))))
        }
    }
}

/// # `GET /_matrix/client/v3/login/sso/redirect/{idpId}`
async fn sso_login_with_provider_route(
    s: AppState,
    req: Ruma<sso_login_with_provider::v3::Request>,
) -> ApiResult<sso_login_with_provider::v3::Response> {
    let body = req.body;
    let (location, cookie) = start(&s, &req.origin, body.idp_id, body.redirect_url, "login").await?;
    let mut out = sso_login_with_provider::v3::Response::new(location);
    out.cookie = cookie.and_then(|c| c.to_str().ok().map(str::to_owned));
    Ok(out)
}

#[derive(Deserialize, Default)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// # `GET /_synapse/client/oidc/callback`
///
/// The provider's answer. Every failure is a page with the auth service's status (400 for
/// an unknown state, 403 for a refused sign-in, 502 for an unreachable provider).
async fn callback_route(State(s): State<AppState>, origin: Origin, headers: HeaderMap, uri: Uri) -> Response {
    let q: CallbackQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    let req = SsoCallbackRequest {
        state: q.state.unwrap_or_default(),
        code: q.code,
        error: q.error,
        error_description: q.error_description,
        cookie_state: cookie(&headers, STATE_COOKIE).map(str::to_owned),
        ip: origin.ip.clone(),
        user_agent: origin.user_agent.clone(),
    };
    let answer = match s.limit(Action::Login, &origin.ip_or_unknown()).await {
        Ok(()) => s.services.auth.sso_callback(req).await,
        Err(e) => Err(e.0),
    };
    let mut response = match answer {
        Ok(out) => finish(&s, out),
        Err(e) => failure(e),
    };
    response.headers_mut().append(header::SET_COOKIE, state_cookie(&s, "", 0));
    response
}

pub(crate) fn finish(s: &AppState, out: SsoCallbackResponse) -> Response {
    if out.purpose == "uia" && out.refused {
        let body = format!(
            "<p class=\"error\">You signed in as someone other than <strong>{}</strong>, who is confirming. The \
             application's request will be refused; start it again.</p>",
            esc(&out.user_id)
        );
        return page(StatusCode::OK, "Not confirmed", &body);
    }
    if out.purpose == "uia" {
        let body = format!(
            "<p>Confirmed as <strong>{}</strong>. You may now close this window and return to the application.</p>",
            esc(&out.user_id)
        );
        return page(StatusCode::OK, "Confirmed", &body);
    }
    if out.purpose == "oauth" {
        let mut response = see_other(&safe_continue(&out.redirect_url));
        if let Some(token) = &out.session_token {
            response.headers_mut().append(header::SET_COOKIE, set_cookie(s, SESSION_COOKIE, token, None));
        }
        return response;
    }
    if !out.confirm {
        return found(&out.redirect_url);
    }
    // The login token would go to a site no operator vouched for: name it and let the user
    // decide, so a link crafted by someone else cannot collect a token for their account.
    let shown = out.redirect_url.split(['?', '#']).next().unwrap_or_default();
    let body = format!(
        "<p>You signed in as <strong>{user}</strong>.</p>\
         <p>Continue to <code>{shown}</code> to finish signing in there. Continue only if you were signing in \
         to this app: it will get full access to your account.</p>\
         <p><a href=\"{url}\" rel=\"noreferrer\">Continue</a></p>",
        user = esc(&out.user_id),
        shown = esc(shown),
        url = esc(&out.redirect_url),
    );
    page(StatusCode::OK, "Continue to your app?", &body)
}

/// A 302 to `location` (a client's URL, possibly a custom scheme).
fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => crate::html::error_page(StatusCode::BAD_REQUEST, "The redirect URL cannot be used."),
    }
}

#[derive(Deserialize, Default)]
struct PickQuery {
    #[serde(default, rename = "redirectUrl")]
    redirect_url: String,
}

/// # `GET /_trellis/sso/pick?redirectUrl=...`
async fn pick_route(State(s): State<AppState>, uri: Uri) -> Response {
    let q: PickQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    if s.settings.sso_providers.is_empty() {
        return failure(not_configured());
    }
    let query = serde_urlencoded::to_string([("redirectUrl", &q.redirect_url)]).unwrap_or_default();
    let links = provider_links(&s, true, |id| format!("/_matrix/client/v3/login/sso/redirect/{id}?{query}"));
    page(StatusCode::OK, "Sign in with", &links)
}

/// A list of links, one a provider, each to `href(idp_id)`.
pub fn provider_links(s: &AppState, with_cas: bool, href: impl Fn(&str) -> String) -> String {
    let items: String = s
        .settings
        .sso_providers
        .iter()
        .filter(|p| with_cas || p.id != CAS_IDP)
        .map(|p| format!("<li><a href=\"{}\">{}</a></li>", esc(&href(&p.id)), esc(&p.name)))
        .collect();
    format!("<ul class=\"providers\">{items}</ul>")
}

/// The OAuth login page's section of provider buttons (empty without providers).
pub fn oauth_buttons(s: &AppState, next: &str) -> String {
    if s.settings.sso_providers.is_empty() {
        return String::new();
    }
    let query = serde_urlencoded::to_string([("continue", next)]).unwrap_or_default();
    // CAS signs in classic clients only (its service URL names a client's redirectUrl).
    let links = provider_links(s, false, |id| format!("{START}/{id}?{query}"));
    format!("<p>Or sign in with:</p>{links}")
}

#[derive(Deserialize, Default)]
struct ContinueQuery {
    #[serde(default, rename = "continue")]
    next: String,
}

/// # `GET /_trellis/sso/start/{idp_id}?continue=...`
///
/// A provider button of the OAuth login page: signs in there, then back to `continue`.
async fn oauth_start_route(
    State(s): State<AppState>,
    origin: Origin,
    Path(idp_id): Path<String>,
    uri: Uri,
) -> Response {
    let q: ContinueQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    to_provider(&s, &origin, idp_id, safe_continue(&q.next), "oauth").await
}

/// A page's way to a provider: the redirect with the state cookie, or the failure page.
async fn to_provider(s: &AppState, origin: &Origin, idp_id: String, target: String, purpose: &str) -> Response {
    match start(s, origin, idp_id, target, purpose).await {
        Ok((location, cookie)) => {
            let mut response = see_other(&location);
            if let Some(cookie) = cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(e) => failure(e),
    }
}

/// The `m.login.sso` stage's fallback page: a link per provider (404 without providers).
pub fn uia_page(s: &AppState, session: &str) -> Result<Vec<u8>, Error> {
    if s.settings.sso_providers.is_empty() {
        return Err(Error::new(trellis_core::ErrorCode::NotFound, "Unknown authentication stage").with_status(404));
    }
    let query = serde_urlencoded::to_string([("session", session)]).unwrap_or_default();
    let links = provider_links(s, true, |id| format!("{UIA}/{id}?{query}"));
    let body = format!("<p>Confirm it is you by signing in again with:</p>{links}");
    Ok(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Confirm your identity</title></head>\
         <body><h1>Confirm your identity</h1>{body}</body></html>"
    )
    .into_bytes())
}

#[derive(Deserialize, Default)]
struct SessionQuery {
    #[serde(default)]
    session: String,
}

/// # `GET /_trellis/sso/uia/{idp_id}?session=...`
///
/// A provider link of the `m.login.sso` fallback page: signs in there to complete the stage.
async fn uia_start_route(State(s): State<AppState>, origin: Origin, Path(idp_id): Path<String>, uri: Uri) -> Response {
    let q: SessionQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    to_provider(&s, &origin, idp_id, q.session, "uia").await
}
