//! Request and response types of Synapse's registration token admin API
//! (`/_synapse/admin/v1/registration_tokens`): ruma has none, so these are the smallest
//! ones with Synapse's paths and shapes, made with ruma's `request`/`response` macros.

use ruma::{
    JsOption,
    api::{auth_scheme::AccessToken, metadata, request, response},
};
use serde::{Deserialize, Serialize};

/// A registration token as the admin API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Token {
    pub token: String,
    pub uses_allowed: Option<i32>,
    pub pending: i32,
    pub completed: i32,
    pub expiry_time: Option<i64>,
}

pub mod list {
    use super::*;

    metadata! { method: GET, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/registration_tokens" }

    #[request]
    #[derive(Default)]
    pub struct Request {
        /// Only those usable now (true) or only those used up or expired (false).
        #[ruma_api(query)]
        #[serde(default)]
        pub valid: Option<bool>,
    }

    #[response]
    pub struct Response {
        pub registration_tokens: Vec<Token>,
    }
}

pub mod create {
    use super::*;

    metadata! { method: POST, rate_limited: false, authentication: AccessToken, path: "/_synapse/admin/v1/registration_tokens/new" }

    #[request]
    #[derive(Default)]
    pub struct Request {
        #[serde(default)]
        pub token: Option<String>,
        #[serde(default)]
        pub length: Option<i32>,
        #[serde(default)]
        pub uses_allowed: Option<i32>,
        #[serde(default)]
        pub expiry_time: Option<i64>,
    }

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub token: Token,
    }
}

/// Defines an endpoint on one token (`{token}` in the path).
macro_rules! token_endpoint {
    ($module:ident, $method:ident, { $($(#[$attr:meta])* $field:ident: $ty:ty),* }, $resp:tt) => {
        pub mod $module {
            use super::*;

            metadata! {
                method: $method, rate_limited: false, authentication: AccessToken,
                path: "/_synapse/admin/v1/registration_tokens/{token}"
            }

            #[request]
            pub struct Request {
                #[ruma_api(path)]
                pub token: String,
                $( $(#[$attr])* pub $field: $ty, )*
            }

            token_endpoint!(@response $resp);
        }
    };
    (@response one) => {
        #[response]
        pub struct Response {
            #[ruma_api(body)]
            pub token: Token,
        }
    };
    (@response none) => {
        #[response]
        pub struct Response {}
    };
}

token_endpoint!(get, GET, {}, one);
// Absent leaves a value as it is; `null` makes it unlimited (uses) or never (expiry).
token_endpoint!(update, PUT, {
    #[serde(default, skip_serializing_if = "JsOption::is_undefined")] uses_allowed: JsOption<i32>,
    #[serde(default, skip_serializing_if = "JsOption::is_undefined")] expiry_time: JsOption<i64>
}, one);
token_endpoint!(delete, DELETE, {}, none);
