//! The pages of a signed-in browser beyond consent: the device link page of the device
//! authorization grant (enter or follow a user code, allow or deny), and the account page
//! (`account_management_uri`: devices with sign-out, password change, signing out here).

use crate::html::{error_line, esc, hidden, page};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::Response,
    routing::{get, post},
};
use serde::Deserialize;
use trellis_core::ErrorCode;
use trellis_proto::auth::{
    ListDevicesRequest, OauthApproveDeviceRequest, OauthChangePasswordRequest, OauthDeleteDeviceRequest,
    OauthSessionRequest,
};

use super::{
    ACCOUNT, PREFIX,
    pages::{csrf_refused, failure, login_form, see_other, session, with_csrf},
    web::{SESSION_COOKIE, csrf_ok, csrf_token, set_cookie},
};
use crate::{
    AppState,
    client::{devices_removed, these},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{PREFIX}/link"), get(link_page_route).post(link_route))
        .route(ACCOUNT, get(account_route))
        .route(&format!("{ACCOUNT}/delete_device"), post(delete_device_route))
        .route(&format!("{ACCOUNT}/password"), post(password_route))
        .route(&format!("{ACCOUNT}/logout"), post(logout_route))
}

/// The path and query a page was asked with, to come back to after signing in.
fn here(uri: &Uri) -> String {
    uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| ACCOUNT.to_owned())
}

#[derive(Deserialize, Default)]
struct LinkQuery {
    #[serde(default)]
    user_code: String,
}

fn link_form(csrf: &str, user_id: &str, user_code: &str, error: Option<&str>) -> Response {
    let body = format!(
        "{error}<p>Signed in as <strong>{user}</strong>. Enter the code your other device shows to let it sign in \
         to your account.</p><form method=\"post\" action=\"{PREFIX}/link\">{csrf}\
         <label>Code <input name=\"user_code\" value=\"{code}\" autocomplete=\"off\" required></label>\
         <button type=\"submit\" name=\"action\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>",
        error = error_line(error),
        user = esc(user_id),
        csrf = hidden("csrf", csrf),
        code = esc(user_code),
    );
    page(if error.is_some() { StatusCode::NOT_FOUND } else { StatusCode::OK }, "Sign in a device", &body)
}

/// # `GET /_trellis/oauth2/link?user_code=...` (RFC 8628 `verification_uri[_complete]`)
async fn link_page_route(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let q: LinkQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    let (csrf, new) = csrf_token(&headers);
    let response = match session(&s, &headers).await {
        Some((_, user_id)) => link_form(&csrf, &user_id, &q.user_code, None),
        None => login_form(&s, &csrf, &here(&uri), None),
    };
    with_csrf(&s, response, &csrf, new)
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    action: String,
}

/// # `POST /_trellis/oauth2/link`
async fn link_route(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(f) = serde_urlencoded::from_bytes::<LinkForm>(&body) else { return csrf_refused() };
    if !csrf_ok(&headers, &f.csrf) {
        return csrf_refused();
    }
    let Some((session_token, user_id)) = session(&s, &headers).await else {
        return login_form(&s, &f.csrf, &format!("{PREFIX}/link"), None);
    };
    let approve = f.action == "allow";
    let req = OauthApproveDeviceRequest { session_token, user_code: f.user_code.clone(), approve };
    match s.services.auth.oauth_approve_device(req).await {
        Ok(done) if approve => page(
            StatusCode::OK,
            "Device signed in",
            &format!(
                "<p><strong>{}</strong> is now signed in as device <code>{}</code>. You can go back to it.</p>",
                esc(&done.client_name),
                esc(&done.device_id)
            ),
        ),
        Ok(_) => page(StatusCode::OK, "Request denied", "<p>The device was not signed in.</p>"),
        Err(e) if e.code() == ErrorCode::NotFound => {
            link_form(&f.csrf, &user_id, &f.user_code, Some("That code is unknown or has expired."))
        }
        Err(e) => failure(e),
    }
}

#[derive(Deserialize, Default)]
struct AccountQuery {
    action: Option<String>,
    device_id: Option<String>,
}

/// The account page of `user_id`, with a message or an error from the last action.
async fn account_page(
    s: &AppState,
    csrf: &str,
    user_id: &str,
    q: &AccountQuery,
    note: Option<(bool, &str)>,
) -> Response {
    let devices = match s.services.auth.list_devices(ListDevicesRequest { user_id: user_id.to_owned() }).await {
        Ok(list) => list.devices,
        Err(e) => return failure(e),
    };
    let asked = q.action.as_deref().is_some_and(|a| a.ends_with("device_delete") || a.ends_with("session_end"));
    let rows: String = devices
        .iter()
        .map(|d| {
            let marked = asked && q.device_id.as_deref() == Some(d.device_id.as_str());
            format!(
                "<li{mark}><code>{id}</code> {name} <form method=\"post\" action=\"{ACCOUNT}/delete_device\" \
                 style=\"display:inline\">{csrf}{device}<button type=\"submit\">Sign out</button></form></li>",
                mark = if marked { " style=\"font-weight:bold\"" } else { "" },
                id = esc(&d.device_id),
                name = esc(d.display_name.as_deref().unwrap_or("")),
                csrf = hidden("csrf", csrf),
                device = hidden("device_id", &d.device_id),
            )
        })
        .collect();
    let note = match note {
        Some((true, text)) => error_line(Some(text)),
        Some((false, text)) => format!("<p>{}</p>", esc(text)),
        None => String::new(),
    };
    let body = format!(
        "{note}<p>Signed in as <strong>{user}</strong>.</p><h2>Devices</h2><ul>{rows}</ul>\
         <h2>Change password</h2><form method=\"post\" action=\"{ACCOUNT}/password\">{csrf}\
         <label>Current password <input name=\"current_password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <label>New password <input name=\"new_password\" type=\"password\" autocomplete=\"new-password\" required></label>\
         <button type=\"submit\">Change password</button></form>\
         <form method=\"post\" action=\"{ACCOUNT}/logout\">{csrf}<button type=\"submit\">Sign out of this page</button></form>",
        user = esc(user_id),
        csrf = hidden("csrf", csrf),
    );
    let status = if note.starts_with("<p class") { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    page(status, "Your account", &body)
}

/// # `GET /_trellis/account` (`account_management_uri`; `action` and `device_id` honoured)
async fn account_route(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let q: AccountQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    let (csrf, new) = csrf_token(&headers);
    let response = match session(&s, &headers).await {
        Some((_, user_id)) => account_page(&s, &csrf, &user_id, &q, None).await,
        None => login_form(&s, &csrf, &here(&uri), None),
    };
    with_csrf(&s, response, &csrf, new)
}

#[derive(Deserialize)]
struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// The form's session, or the page that answers instead.
async fn signed_in_form(
    s: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(AccountForm, String, String), Box<Response>> {
    let Ok(f) = serde_urlencoded::from_bytes::<AccountForm>(body) else { return Err(Box::new(csrf_refused())) };
    if !csrf_ok(headers, &f.csrf) {
        return Err(Box::new(csrf_refused()));
    }
    match session(s, headers).await {
        Some((token, user_id)) => Ok((f, token, user_id)),
        None => Err(Box::new(login_form(s, &f.csrf, ACCOUNT, None))),
    }
}

/// # `POST /_trellis/account/delete_device`
async fn delete_device_route(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (f, session_token, user_id) = match signed_in_form(&s, &headers, &body).await {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let req = OauthDeleteDeviceRequest { session_token, device_id: f.device_id.clone() };
    if let Err(e) = s.services.auth.oauth_delete_device(req).await {
        return failure(e);
    }
    match devices_removed(&s, &user_id, these(vec![f.device_id])).await {
        Ok(()) => see_other(ACCOUNT),
        Err(e) => failure(e.0),
    }
}

/// # `POST /_trellis/account/password`: the current password again, then the new one.
async fn password_route(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (f, session_token, user_id) = match signed_in_form(&s, &headers, &body).await {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let req = OauthChangePasswordRequest {
        session_token,
        current_password: f.current_password,
        new_password: f.new_password,
    };
    let q = AccountQuery::default();
    match s.services.auth.oauth_change_password(req).await {
        Ok(_) => account_page(&s, &f.csrf, &user_id, &q, Some((false, "Your password has been changed."))).await,
        Err(e) if e.is_internal() => failure(e),
        Err(e) => {
            let message = e.matrix().map(|m| m.message.clone()).unwrap_or_default();
            account_page(&s, &f.csrf, &user_id, &q, Some((true, &message))).await
        }
    }
}

/// # `POST /_trellis/account/logout`: ends this browser's session (devices stay signed in).
async fn logout_route(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, session_token, _) = match signed_in_form(&s, &headers, &body).await {
        Ok(found) => found,
        Err(page) => return *page,
    };
    if let Err(e) = s.services.auth.oauth_browser_logout(OauthSessionRequest { session_token }).await {
        return failure(e);
    }
    let mut response = page(StatusCode::OK, "Signed out", "<p>You have signed out of this page.</p>");
    response.headers_mut().append(header::SET_COOKIE, set_cookie(&s, SESSION_COOKIE, "", Some(0)));
    response
}
