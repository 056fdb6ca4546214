//! The browser's half of user-interactive auth (the spec's "Fallback"): a stage completed on
//! the fallback web page is recorded in its session, and the client's next request naming
//! only the session finds it done. The stage is checked exactly as a client's `auth` object
//! would be, in a round rebuilt from the session itself.

use trellis_core::{Error, ErrorCode, Result, time::now_ms};
use trellis_proto::auth::{AuthAck, UiaFallbackRequest};

use crate::{
    register::register_flows,
    service::Auth,
    uia::{self, Outcome, Round},
    uia_store,
};

impl Auth {
    pub(crate) async fn do_uia_fallback(&self, req: UiaFallbackRequest) -> Result<AuthAck> {
        let row = {
            let client = self.pool.get().await?;
            uia_store::get(&client, &req.session, now_ms() - uia::SESSION_TTL_MS).await?
        };
        let row = row.ok_or_else(uia::unknown_session)?;
        // A signed-in user's session is confirmed with the password; a registration's with
        // the stages registration offers.
        let flows = match row.user_id {
            Some(_) => self.user_flows(),
            None => register_flows(&self.config),
        };
        let round = Round {
            kind: &row.kind,
            user_id: row.user_id.as_deref(),
            target: row.target.as_deref(),
            params: None,
            flows,
            auth_json: &req.auth_json,
            server_name: &self.config.server_name,
            recaptcha: self.config.recaptcha.as_ref(),
            ip: req.ip.as_deref(),
        };
        match self.uia.check(&self.pool, round).await? {
            Outcome::Incomplete { body, .. } if body.contains_key("errcode") => {
                let code = ErrorCode::parse(body["errcode"].as_str().unwrap_or_default());
                let message = body.get("error").and_then(|e| e.as_str()).unwrap_or("Authentication failed");
                Err(Error::new(code, message))
            }
            Outcome::Incomplete { .. } | Outcome::Complete(_) => Ok(AuthAck {}),
        }
    }
}
