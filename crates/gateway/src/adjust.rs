//! [`Adjusted`]: an endpoint's ruma request, parsed by ruma after one named adjustment of its
//! JSON body, where ruma's type refuses what clients send and Synapse accepts. Each
//! adjustment says which clients need it. Everything else is ruma's: metadata, paths,
//! parsing, the response type.

use std::marker::PhantomData;

use ruma::api::{IncomingRequest, Metadata, error::DeserializationError};
use serde_json::{Map, Value, value::RawValue};

/// One adjustment of a request body before ruma parses it; `Kept` is what it takes out.
pub trait Adjustment: Send + 'static {
    type Kept: Send;

    fn adjust(body: &mut Map<String, Value>) -> serde_json::Result<Self::Kept>;
}

pub struct Adjusted<T, A: Adjustment> {
    pub request: T,
    pub kept: A::Kept,
    adjustment: PhantomData<A>,
}

/// The user-interactive auth dictionary, held aside as sent. The auth service reads it
/// itself, as Synapse does — including the `user` key of pre-r0.4 password stages (SyTest and
/// older clients send it) that ruma's `AuthData` refuses.
pub struct HoldAuth;

impl Adjustment for HoldAuth {
    type Kept = Option<Box<RawValue>>;

    fn adjust(body: &mut Map<String, Value>) -> serde_json::Result<Self::Kept> {
        match body.remove("auth") {
            None | Some(Value::Null) => Ok(None),
            Some(auth) => serde_json::value::to_raw_value(&auth).map(Some),
        }
    }
}

/// `/login` bodies must name their `type` as a string: ruma's login parser panics on an
/// object without one (it indexes the object by `type`), so such a body is refused before
/// ruma reads it, as the missing field it is (`M_BAD_JSON`). Needed for any client that
/// sends a malformed login, and for fuzzers.
pub struct LoginTypeNamed;

impl Adjustment for LoginTypeNamed {
    type Kept = ();

    fn adjust(body: &mut Map<String, Value>) -> serde_json::Result<()> {
        use serde::de::Error;
        match body.get("type") {
            Some(Value::String(_)) => Ok(()),
            Some(_) => Err(serde_json::Error::custom("invalid type: `type` must be a string")),
            None => Err(serde_json::Error::missing_field("type")),
        }
    }
}

/// A request with user-interactive auth: ruma's type, the auth dictionary as sent.
pub type Uia<T> = Adjusted<T, HoldAuth>;

impl<T> Uia<T> {
    /// The auth dictionary as the auth service takes it: JSON, empty when absent.
    pub fn auth_json(&self) -> String {
        self.kept.as_ref().map(|a| a.get().to_owned()).unwrap_or_default()
    }
}

impl<T: Metadata, A: Adjustment> Metadata for Adjusted<T, A> {
    const METHOD: http::Method = T::METHOD;
    const RATE_LIMITED: bool = T::RATE_LIMITED;
    type Authentication = T::Authentication;
    type PathBuilder = T::PathBuilder;
    const PATH_BUILDER: T::PathBuilder = T::PATH_BUILDER;
}

impl<T: IncomingRequest, A: Adjustment> IncomingRequest for Adjusted<T, A> {
    type EndpointError = T::EndpointError;
    type OutgoingResponse = T::OutgoingResponse;

    fn try_from_http_request_inner(
        request: http::Request<&[u8]>,
        path_args: &[&str],
    ) -> Result<Adjusted<T, A>, DeserializationError> {
        let (parts, body) = request.into_parts();
        let mut object: Map<String, Value> = serde_json::from_slice(body)?;
        let kept = A::adjust(&mut object)?;
        let body = serde_json::to_vec(&object)?;
        let request = T::try_from_http_request_inner(http::Request::from_parts(parts, body.as_slice()), path_args)?;
        Ok(Adjusted { request, kept, adjustment: PhantomData })
    }
}

#[cfg(test)]
mod tests {
    use ruma::api::{IncomingRequestExt, client::device::delete_devices};

    use super::*;

    fn request(body: &[u8]) -> http::Request<&[u8]> {
        http::Request::builder().method("POST").uri("/_matrix/client/v3/delete_devices").body(body).expect("a request")
    }

    #[test]
    fn legacy_password_stages_reach_the_service_as_sent() {
        // The pre-r0.4 `user` key: ruma's `AuthData` wants an `identifier` and refuses this.
        let body = br#"{"devices": ["A"], "auth": {"type": "m.login.password", "user": "@a:x", "password": "p"}}"#;
        assert!(delete_devices::v3::Request::try_from_http_request(request(body), &[]).is_err());
        let uia = Uia::<delete_devices::v3::Request>::try_from_http_request(request(body), &[]).expect("parsed");
        assert_eq!(uia.request.devices, ["A"]);
        let auth: Value = serde_json::from_str(&uia.auth_json()).expect("JSON");
        assert_eq!(auth["user"], "@a:x");
    }

    #[test]
    fn a_login_without_a_type_is_refused_before_ruma_reads_it() {
        use ruma::api::client::session::login;
        let post = |body: &'static [u8]| {
            http::Request::builder().method("POST").uri("/_matrix/client/v3/login").body(body).expect("a request")
        };
        for body in [&br#"{"user": "a", "password": "p"}"#[..], br#"{"type": 5}"#, br#"{}"#] {
            let parsed = Adjusted::<login::v3::Request, LoginTypeNamed>::try_from_http_request(post(body), &[]);
            assert!(parsed.is_err(), "{}", String::from_utf8_lossy(body));
        }
        let body = br#"{"type": "m.login.password", "user": "a", "password": "p"}"#;
        assert!(Adjusted::<login::v3::Request, LoginTypeNamed>::try_from_http_request(post(body), &[]).is_ok());
    }

    #[test]
    fn no_auth_is_empty_and_the_rest_is_still_ruma_checked() {
        let uia = Uia::<delete_devices::v3::Request>::try_from_http_request(request(br#"{"devices": []}"#), &[]);
        assert_eq!(uia.expect("parsed").auth_json(), "");
        let missing = Uia::<delete_devices::v3::Request>::try_from_http_request(request(br#"{"auth": null}"#), &[]);
        assert!(missing.is_err(), "devices is required");
    }
}
