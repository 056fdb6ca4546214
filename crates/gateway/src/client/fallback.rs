//! The spec's fallback pages, for clients that cannot do a step themselves. User-interactive
//! auth: a client opens `/auth/{type}/fallback/web?session=…` for a stage (the captcha, a
//! registration token, the password, the dummy stage) in a browser; the page's form posts
//! back to the same address, the auth service records the stage in the session, and the page
//! tells the client it is done (`window.onAuthDone()` or an `authDone` message to its
//! opener). Login: `/_matrix/static/client/login/` signs in with a password and hands the
//! `/login` answer to `window.matrixLogin.onLogin`.

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use ruma::api::client::uiaa::get_uiaa_fallback_page;
use serde_json::{Map, Value};
use trellis_core::{Error, ErrorCode, ratelimit::Action};
use trellis_proto::auth::{LoginRequest, UiaFallbackRequest};

use crate::{
    AppState,
    error::ApiResult,
    extract::{Origin, Ruma},
    html::esc,
    router::{RumaRoutes, paths_of},
};

/// The stages a fallback page exists for.
const STAGES: [&str; 4] = ["m.login.dummy", "m.login.password", "m.login.registration_token", "m.login.recaptcha"];

pub fn routes() -> Router<AppState> {
    let mut router = Router::new().ruma(fallback_page_route);
    for path in paths_of::<get_uiaa_fallback_page::v3::Request>() {
        router = router.route(&path, post(submit_route));
    }
    for path in ["/_matrix/static/client/login/", "/_matrix/static/client/login"] {
        router = router.route(path, axum::routing::get(login_page_route).post(login_submit_route));
    }
    router
}

/// The query parameters a login fallback page passes on to `/login` (spec 1.1).
#[derive(serde::Deserialize, Default)]
struct LoginParams {
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
}

/// # `GET /_matrix/static/client/login/`
async fn login_page_route(axum::extract::Query(params): axum::extract::Query<LoginParams>) -> Response {
    html(login_form(&params, None))
}

/// The login form, posted back to the page: signs in and gives the client the `/login`
/// answer.
async fn login_submit_route(
    State(s): State<AppState>,
    origin: Origin,
    body: Bytes,
) -> Result<Response, crate::error::ApiError> {
    s.limit(Action::Login, &origin.ip_or_unknown()).await?;
    let form: HashMap<String, String> =
        serde_urlencoded::from_bytes(&body).map_err(|_| Error::bad_json("The form could not be read"))?;
    let field = |name: &str| form.get(name).filter(|v| !v.is_empty()).cloned();
    let params = LoginParams {
        device_id: field("device_id"),
        initial_device_display_name: field("initial_device_display_name"),
    };
    let login = LoginRequest {
        user: field("user").unwrap_or_default(),
        password: field("password").unwrap_or_default(),
        device_id: params.device_id.clone(),
        initial_device_display_name: params.initial_device_display_name.clone(),
        ip: origin.ip,
        user_agent: origin.user_agent,
        ..LoginRequest::default()
    };
    match s.services.auth.login(login).await {
        Ok(done) => {
            let answer = serde_json::json!({
                "user_id": done.user_id,
                "access_token": done.access_token,
                "device_id": done.device_id,
                "home_server": s.settings.server_name,
            });
            Ok(html(logged_in_page(&answer)))
        }
        Err(e) if e.status() < 500 => {
            let message = e.client_body()["error"].as_str().unwrap_or("Sign-in failed").to_owned();
            Ok(html(login_form(&params, Some(&message))))
        }
        Err(e) => Err(e.into()),
    }
}

fn login_form(params: &LoginParams, error: Option<&str>) -> String {
    let hidden = |name: &str, value: &Option<String>| match value {
        Some(v) => format!(r#"<input type="hidden" name="{name}" value="{}">"#, esc(v)),
        None => String::new(),
    };
    let error = error.map(|e| format!(r#"<p class="error">{}</p>"#, esc(e))).unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in</title></head>
<body><h1>Sign in</h1>{error}
<form method="post">{device}{name}
<p><label>Username <input type="text" name="user" autocomplete="username" autofocus required></label></p>
<p><label>Password <input type="password" name="password" autocomplete="current-password" required></label></p>
<p><input type="submit" value="Sign in"></p></form></body></html>
"#,
        device = hidden("device_id", &params.device_id),
        name = hidden("initial_device_display_name", &params.initial_device_display_name),
    )
}

/// Hands `answer` (the `/login` response) to the page's embedding client.
fn logged_in_page(answer: &Value) -> String {
    // Inside a script element nothing may close it: `<` is written as its JSON escape.
    let json = answer.to_string().replace('<', "\\u003c");
    let user = esc(answer["user_id"].as_str().unwrap_or_default());
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Signed in</title>
<script>
if (window.matrixLogin && window.matrixLogin.onLogin) {{
    window.matrixLogin.onLogin({json});
}}
</script></head>
<body><p>Signed in as {user}. You may now close this window and return to the application.</p></body></html>
"#
    )
}

/// # `GET /_matrix/client/v3/auth/{authType}/fallback/web`
async fn fallback_page_route(
    s: AppState,
    req: Ruma<get_uiaa_fallback_page::v3::Request>,
) -> ApiResult<get_uiaa_fallback_page::v3::Response> {
    if req.body.auth_type.as_str() == "m.login.sso" {
        let page = crate::sso::uia_page(&s, &req.body.session)?;
        return Ok(get_uiaa_fallback_page::v3::Response::html(page));
    }
    let stage = known_stage(req.body.auth_type.as_str())?;
    let page = form_page(stage, &req.body.session, s.settings.recaptcha_public_key.as_deref(), None);
    Ok(get_uiaa_fallback_page::v3::Response::html(page.into_bytes()))
}

/// The page's form, posted back to the page's own address.
async fn submit_route(
    State(s): State<AppState>,
    Path(stage): Path<String>,
    origin: Origin,
    body: Bytes,
) -> Result<Response, crate::error::ApiError> {
    let stage = known_stage(&stage)?;
    let form: HashMap<String, String> =
        serde_urlencoded::from_bytes(&body).map_err(|_| Error::bad_json("The form could not be read"))?;
    let session = form.get("session").cloned().unwrap_or_default();
    let mut auth = Map::new();
    auth.insert("type".into(), stage.into());
    auth.insert("session".into(), session.clone().into());
    for (field, key) in [("password", "password"), ("token", "token"), ("g-recaptcha-response", "response")] {
        if let Some(value) = form.get(field) {
            auth.insert(key.into(), Value::String(value.clone()));
        }
    }
    let req =
        UiaFallbackRequest { session: session.clone(), auth_json: Value::Object(auth).to_string(), ip: origin.ip };
    let page = match s.services.auth.uia_fallback(req).await {
        Ok(_) => done_page(),
        // Shown on the form again, in the words the client would have had.
        Err(e) if e.status() < 500 => {
            let message = e.client_body()["error"].as_str().unwrap_or("That did not work").to_owned();
            form_page(stage, &session, s.settings.recaptcha_public_key.as_deref(), Some(&message))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(html(page))
}

fn known_stage(stage: &str) -> Result<&'static str, Error> {
    STAGES
        .into_iter()
        .find(|s| *s == stage)
        .ok_or_else(|| Error::new(ErrorCode::NotFound, "Unknown authentication stage").with_status(404))
}

fn html(page: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

/// The form for `stage` in `session`, with `error` from a failed attempt.
fn form_page(stage: &str, session: &str, site_key: Option<&str>, error: Option<&str>) -> String {
    let (title, fields, script) = match stage {
        "m.login.password" => (
            "Confirm your password",
            r#"<p><label>Password <input type="password" name="password" autofocus required></label></p>"#.to_owned(),
            "",
        ),
        "m.login.registration_token" => (
            "Registration token",
            r#"<p><label>Token <input type="text" name="token" autofocus required></label></p>"#.to_owned(),
            "",
        ),
        "m.login.recaptcha" => (
            "Prove you are human",
            format!(r#"<div class="g-recaptcha" data-sitekey="{}"></div>"#, esc(site_key.unwrap_or_default())),
            r#"<script src="https://www.recaptcha.net/recaptcha/api.js" async defer></script>"#,
        ),
        _ => ("Continue", "<p>Press the button to continue.</p>".to_owned(), ""),
    };
    let error = error.map(|e| format!(r#"<p class="error">{}</p>"#, esc(e))).unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>{script}</head>
<body><h1>{title}</h1>{error}
<form method="post"><input type="hidden" name="session" value="{session}">{fields}
<p><input type="submit" value="Continue"></p></form></body></html>
"#,
        session = esc(session),
    )
}

/// Tells the client (embedded browser or opener window) that the stage is done.
fn done_page() -> String {
    r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Done</title>
<script>
if (window.onAuthDone) {
    window.onAuthDone();
} else if (window.opener && window.opener.postMessage) {
    window.opener.postMessage("authDone", "*");
}
</script></head>
<body><p>Thank you. You may now close this window and return to the application.</p></body></html>
"#
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cannot_break_out_of_its_attribute() {
        let page = form_page("m.login.dummy", r#""><script>alert(1)</script>"#, None, None);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");
    }

    #[test]
    fn the_login_answer_cannot_close_its_script() {
        let page = logged_in_page(&serde_json::json!({"user_id": "@a:x", "access_token": "</script><b>"}));
        assert!(!page.contains("</script><b>"), "{page}");
        assert!(page.contains(r"\u003c/script>"), "{page}");
    }

    #[test]
    fn unknown_stages_have_no_page() {
        assert_eq!(known_stage("m.login.sso").unwrap_err().status(), 404);
        assert_eq!(known_stage("m.login.recaptcha").unwrap(), "m.login.recaptcha");
    }
}
