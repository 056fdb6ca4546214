//! The `m.login.recaptcha` stage: the client's reCAPTCHA answer is checked with the
//! configured verification endpoint (Google's `siteverify` API, a form POST of the secret, the
//! answer and the client's address, answered with `{"success": bool}`).

use std::time::Duration;

use serde::Deserialize;
use trellis_core::{Error, Result, config::RecaptchaConfig};

/// How long the verification endpoint may take.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct Verdict {
    #[serde(default)]
    success: bool,
}

/// A client for the verification endpoint.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(VERIFY_TIMEOUT).build().unwrap_or_default()
}

/// Whether the endpoint accepts `answer`. An endpoint that cannot be reached, or answers
/// something else than its verdict, is a 503: the client may try the stage again.
pub(crate) async fn verify(
    http: &reqwest::Client,
    config: &RecaptchaConfig,
    answer: &str,
    ip: Option<&str>,
) -> Result<bool> {
    let mut form = vec![("secret", config.private_key.as_str()), ("response", answer)];
    if let Some(ip) = ip {
        form.push(("remoteip", ip));
    }
    let body = serde_urlencoded::to_string(&form).map_err(|e| Error::internal(format!("captcha form: {e}")))?;
    let unavailable = |why: String| {
        tracing::warn!(endpoint = %config.siteverify_api, error = %why, "captcha verification failed");
        Error::new(trellis_core::ErrorCode::Unknown, "Captcha could not be verified; try again").with_status(503)
    };
    let answer = http
        .post(&config.siteverify_api)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if !answer.status().is_success() {
        return Err(unavailable(format!("status {}", answer.status())));
    }
    let verdict: Verdict = answer.json().await.map_err(|e| unavailable(e.to_string()))?;
    Ok(verdict.success)
}
