//! The pages of the authorization code flow: `/authorize` checks the request (the auth
//! service decides) and shows the login form, the registration form (`prompt=create`) or,
//! to a signed-in browser, the consent form; their POSTs sign in or register (a browser
//! session cookie), and consent sends the browser back to the client with a code. Every form
//! carries the double-submit CSRF token.

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use trellis_core::{Error, ErrorCode, ratelimit::Action};
use trellis_proto::auth::{
    OauthAuthorizationRequest, OauthBrowserLoginRequest, OauthGrantCodeRequest, OauthSessionRequest,
};

use super::{
    ACCOUNT, PREFIX,
    web::{CSRF_COOKIE, SESSION_COOKIE, cookie, csrf_ok, csrf_token, set_cookie},
};
use crate::{
    AppState,
    extract::Origin,
    html::{error_line, error_page, esc, hidden, page},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{PREFIX}/authorize"), get(authorize_route))
        .route(&format!("{PREFIX}/login"), get(login_page_route).post(login_route))
        .route(&format!("{PREFIX}/register"), get(register_page_route).post(register_route))
        .route(&format!("{PREFIX}/consent"), post(consent_route))
        .merge(super::account::routes())
}

/// `/authorize`'s query (RFC 6749 §4.1.1 with PKCE, `response_mode` and `prompt`).
#[derive(Deserialize, Default)]
struct AuthorizeQuery {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    state: Option<String>,
    response_mode: Option<String>,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    prompt: Option<String>,
}

/// The authorization request in a query, or why it cannot be one.
fn authorization(query: &str) -> Result<OauthAuthorizationRequest, &'static str> {
    let q: AuthorizeQuery = serde_urlencoded::from_str(query).map_err(|_| "The authorization request is not valid.")?;
    if q.client_id.is_empty() || q.redirect_uri.is_empty() {
        return Err("The authorization request names no client or redirect URI.");
    }
    Ok(OauthAuthorizationRequest {
        response_type: q.response_type,
        client_id: q.client_id,
        redirect_uri: q.redirect_uri,
        scope: q.scope,
        state: q.state,
        response_mode: q.response_mode,
        code_challenge: q.code_challenge,
        code_challenge_method: q.code_challenge_method,
        prompt: q.prompt,
    })
}

/// The query without `prompt`, for coming back to `/authorize` once signed in.
fn without_prompt(query: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let kept: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "prompt").collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// Where a form may send the browser afterwards: one of our own pages.
pub fn safe_continue(target: &str) -> String {
    let ok = target.starts_with("/_trellis/") && !target.contains("//") && !target.contains('\\');
    if ok { target.to_owned() } else { ACCOUNT.to_owned() }
}

/// A 303 to `location`.
pub fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The redirect URI cannot be used."),
    }
}

/// A failure the user sees as a page (internal ones logged, never shown).
pub fn failure(e: Error) -> Response {
    if e.is_internal() {
        tracing::error!(error = ?e, "internal error");
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error.");
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_page(status, &e.matrix().map(|m| m.message.clone()).unwrap_or_default())
}

/// Adds the CSRF cookie to a page when the browser has none yet.
pub fn with_csrf(s: &AppState, mut response: Response, csrf: &str, new: bool) -> Response {
    if new {
        response.headers_mut().append(header::SET_COOKIE, set_cookie(s, CSRF_COOKIE, csrf, None));
    }
    response
}

/// The signed-in user of this browser and their session token, if any.
pub async fn session(s: &AppState, headers: &HeaderMap) -> Option<(String, String)> {
    let token = cookie(headers, SESSION_COOKIE)?.to_owned();
    let found = s.services.auth.oauth_browser_session(OauthSessionRequest { session_token: token.clone() }).await;
    found.ok().map(|f| (token, f.user_id))
}

pub fn login_form(s: &AppState, csrf: &str, next: &str, error: Option<&str>) -> Response {
    let register =
        format!("{PREFIX}/register?{}", serde_urlencoded::to_string([("continue", next)]).unwrap_or_default());
    let body = format!(
        "{error}<form method=\"post\" action=\"{PREFIX}/login\">{csrf}{next}\
         <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>\
         <p><a href=\"{register}\">Create an account</a></p>{providers}",
        providers = crate::sso::oauth_buttons(s, next),
        error = error_line(error),
        csrf = hidden("csrf", csrf),
        next = hidden("continue", next),
        register = esc(&register),
    );
    let status = if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    page(status, "Sign in", &body)
}

fn register_form(csrf: &str, next: &str, error: Option<(StatusCode, &str)>) -> Response {
    let login = format!("{PREFIX}/login?{}", serde_urlencoded::to_string([("continue", next)]).unwrap_or_default());
    let body = format!(
        "{error}<form method=\"post\" action=\"{PREFIX}/register\">{csrf}{next}\
         <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"new-password\" required></label>\
         <label>Confirm password <input name=\"password_confirm\" type=\"password\" autocomplete=\"new-password\" required></label>\
         <label>Registration token (if the server asks for one) <input name=\"registration_token\"></label>\
         <button type=\"submit\">Create account</button></form>\
         <p><a href=\"{login}\">Sign in instead</a></p>",
        error = error_line(error.map(|e| e.1)),
        csrf = hidden("csrf", csrf),
        next = hidden("continue", next),
        login = esc(&login),
    );
    page(error.map_or(StatusCode::OK, |e| e.0), "Create an account", &body)
}

fn consent_form(
    csrf: &str,
    request: &str,
    check: &trellis_proto::auth::OauthAuthorizationCheck,
    user_id: &str,
) -> Response {
    let scopes: String = check.scopes.iter().map(|s| format!("<li><code>{}</code></li>", esc(s))).collect();
    let body = format!(
        "<p><strong>{client}</strong> (<a href=\"{uri}\" rel=\"noopener noreferrer\">{uri}</a>) wants to access your \
         account <strong>{user}</strong> as a new session (device <code>{device}</code>): full access to your messages, \
         rooms and settings.</p><ul>{scopes}</ul>\
         <form method=\"post\" action=\"{PREFIX}/consent\">{csrf}{request}\
         <button type=\"submit\" name=\"action\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>",
        client = esc(&check.client_name),
        uri = esc(&check.client_uri),
        user = esc(user_id),
        device = esc(&check.device_id),
        csrf = hidden("csrf", csrf),
        request = hidden("request", request),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

/// # `GET /_trellis/oauth2/authorize`
async fn authorize_route(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let query = uri.query().unwrap_or_default();
    let req = match authorization(query) {
        Ok(req) => req,
        Err(message) => return error_page(StatusCode::BAD_REQUEST, message),
    };
    let prompt = req.prompt.clone();
    let check = match s.services.auth.oauth_check_authorization(req).await {
        Ok(check) => check,
        Err(e) => return failure(e),
    };
    if let Some(url) = check.error_redirect.as_deref() {
        return see_other(url);
    }
    let request = without_prompt(query);
    let next = format!("{PREFIX}/authorize?{request}");
    let (csrf, new) = csrf_token(&headers);
    let response = match (session(&s, &headers).await, prompt.as_deref()) {
        (_, Some("create")) => register_form(&csrf, &next, None),
        (Some((_, user_id)), p) if p != Some("login") => consent_form(&csrf, &request, &check, &user_id),
        _ => login_form(&s, &csrf, &next, None),
    };
    with_csrf(&s, response, &csrf, new)
}

#[derive(Deserialize)]
struct ContinueQuery {
    #[serde(default, rename = "continue")]
    next: String,
}

/// # `GET /_trellis/oauth2/login?continue=...`
async fn login_page_route(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let q: ContinueQuery =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or(ContinueQuery { next: String::new() });
    let (csrf, new) = csrf_token(&headers);
    with_csrf(&s, login_form(&s, &csrf, &safe_continue(&q.next), None), &csrf, new)
}

/// # `GET /_trellis/oauth2/register?continue=...`
async fn register_page_route(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let q: ContinueQuery =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or(ContinueQuery { next: String::new() });
    let (csrf, new) = csrf_token(&headers);
    with_csrf(&s, register_form(&csrf, &safe_continue(&q.next), None), &csrf, new)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "continue")]
    next: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
    registration_token: Option<String>,
}

pub fn csrf_refused() -> Response {
    error_page(StatusCode::FORBIDDEN, "The form expired or came from another site; go back and try again.")
}

/// Signed in: the session cookie, and on to where the form was going.
fn signed_in(s: &AppState, session_token: &str, next: &str) -> Response {
    let mut response = see_other(&safe_continue(next));
    response.headers_mut().append(header::SET_COOKIE, set_cookie(s, SESSION_COOKIE, session_token, None));
    response
}

/// # `POST /_trellis/oauth2/login`
async fn login_route(State(s): State<AppState>, origin: Origin, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(f) = serde_urlencoded::from_bytes::<LoginForm>(&body) else { return csrf_refused() };
    if !csrf_ok(&headers, &f.csrf) {
        return csrf_refused();
    }
    let next = safe_continue(&f.next);
    // The same per-address limit as `/login`: the form is no way around it.
    if let Err(e) = s.limit(Action::Login, &origin.ip_or_unknown()).await {
        return failure(e.0);
    }
    let req = OauthBrowserLoginRequest {
        username: f.username,
        password: f.password,
        register: false,
        registration_token: None,
        ip: origin.ip,
        user_agent: origin.user_agent,
    };
    match s.services.auth.oauth_browser_login(req).await {
        Ok(session) => signed_in(&s, &session.session_token, &next),
        Err(e) if e.is_internal() => failure(e),
        Err(e) => login_form(&s, &f.csrf, &next, Some(&e.matrix().map(|m| m.message.clone()).unwrap_or_default())),
    }
}

/// # `POST /_trellis/oauth2/register`: under the server's registration rules and tokens.
async fn register_route(State(s): State<AppState>, origin: Origin, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(f) = serde_urlencoded::from_bytes::<LoginForm>(&body) else { return csrf_refused() };
    if !csrf_ok(&headers, &f.csrf) {
        return csrf_refused();
    }
    let next = safe_continue(&f.next);
    if f.password != f.password_confirm {
        return register_form(&f.csrf, &next, Some((StatusCode::BAD_REQUEST, "The passwords do not match.")));
    }
    if let Err(e) = s.limit(Action::Register, &origin.ip_or_unknown()).await {
        return failure(e.0);
    }
    let req = OauthBrowserLoginRequest {
        username: f.username,
        password: f.password,
        register: true,
        registration_token: f.registration_token,
        ip: origin.ip,
        user_agent: origin.user_agent,
    };
    match s.services.auth.oauth_browser_login(req).await {
        Ok(session) => signed_in(&s, &session.session_token, &next),
        Err(e) if e.is_internal() => failure(e),
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            register_form(&f.csrf, &next, Some((status, &e.matrix().map(|m| m.message.clone()).unwrap_or_default())))
        }
    }
}

#[derive(Deserialize)]
struct ConsentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request: String,
    #[serde(default)]
    action: String,
}

/// # `POST /_trellis/oauth2/consent`: allow (a code) or deny (`access_denied`).
async fn consent_route(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(f) = serde_urlencoded::from_bytes::<ConsentForm>(&body) else { return csrf_refused() };
    if !csrf_ok(&headers, &f.csrf) {
        return csrf_refused();
    }
    let authorization = match authorization(&f.request) {
        Ok(req) => req,
        Err(message) => return error_page(StatusCode::BAD_REQUEST, message),
    };
    let next = format!("{PREFIX}/authorize?{}", f.request);
    let Some(session_token) = cookie(&headers, SESSION_COOKIE).map(str::to_owned) else {
        return login_form(&s, &f.csrf, &next, None);
    };
    let req = OauthGrantCodeRequest { session_token, authorization: Some(authorization), deny: f.action != "allow" };
    match s.services.auth.oauth_grant_code(req).await {
        Ok(redirect) => see_other(&redirect.redirect_to),
        Err(e) if e.code() == ErrorCode::UnknownToken => login_form(&s, &f.csrf, &next, None),
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_targets_stay_on_our_pages() {
        assert_eq!(safe_continue("/_trellis/oauth2/authorize?a=b"), "/_trellis/oauth2/authorize?a=b");
        for bad in ["https://evil.example/", "//evil.example/_trellis/", "/_trellis//evil", "/_matrix/x", ""] {
            assert_eq!(safe_continue(bad), ACCOUNT, "{bad}");
        }
        assert_eq!(without_prompt("a=1&prompt=create&b=2"), "a=1&b=2");
    }
}
