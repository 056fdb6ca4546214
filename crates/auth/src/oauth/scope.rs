//! Matrix scopes (spec "Scope", MSC2967): full client-server API access and the device ID
//! allocation, in their stable and unstable spellings.

use trellis_core::Result;

use super::oauth_error;

const API_SCOPES: [&str; 2] = ["urn:matrix:client:api:*", "urn:matrix:org.matrix.msc2967.client:api:*"];
const DEVICE_PREFIXES: [&str; 2] = ["urn:matrix:client:device:", "urn:matrix:org.matrix.msc2967.client:device:"];
/// Harmless scope tokens some clients add (OpenID Connect's).
const IGNORED: [&str; 1] = ["openid"];

/// A requested scope, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The scope tokens as requested (answered back as `scope`).
    pub tokens: Vec<String>,
    /// The device the tokens are bound to.
    pub device_id: String,
}

impl Scope {
    pub fn as_string(&self) -> String {
        self.tokens.join(" ")
    }
}

fn invalid_scope(description: &str) -> trellis_core::Error {
    oauth_error("invalid_scope", 400, description)
}

/// The spec's device ID rule: the unreserved characters of RFC 3986.
fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
}

/// Parses a space-separated scope: it must grant the client-server API and allocate exactly
/// one device; unknown tokens are refused (`invalid_scope`).
pub fn parse(scope: &str) -> Result<Scope> {
    let mut tokens: Vec<String> = Vec::new();
    let mut device_id = None;
    let mut api = false;
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        if tokens.iter().any(|t| t == token) {
            continue;
        }
        if API_SCOPES.contains(&token) {
            api = true;
        } else if let Some(id) = DEVICE_PREFIXES.iter().find_map(|p| token.strip_prefix(p)) {
            if !valid_device_id(id) {
                return Err(invalid_scope("The device ID in the scope is not valid"));
            }
            if device_id.is_some() {
                return Err(invalid_scope("The scope must name exactly one device"));
            }
            device_id = Some(id.to_owned());
        } else if !IGNORED.contains(&token) {
            return Err(invalid_scope("Unknown scope token"));
        }
        tokens.push(token.to_owned());
    }
    if !api {
        return Err(invalid_scope("The scope must include urn:matrix:client:api:*"));
    }
    let device_id = device_id.ok_or_else(|| invalid_scope("The scope must name exactly one device"))?;
    Ok(Scope { tokens, device_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_unstable_scopes() {
        let s = parse("urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ").unwrap();
        assert_eq!(s.device_id, "ABCDEFGHIJ");
        assert_eq!(s.as_string(), "urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ");
        let u = parse(
            "openid urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:x-Y_z~1",
        )
        .unwrap();
        assert_eq!(u.device_id, "x-Y_z~1");
    }

    #[test]
    fn bad_scopes() {
        for bad in [
            "",
            "urn:matrix:client:api:*",
            "urn:matrix:client:device:ABC",
            "urn:matrix:client:api:* urn:matrix:client:device:A urn:matrix:client:device:B",
            "urn:matrix:client:api:* urn:matrix:client:device:A/B",
            "urn:matrix:client:api:* urn:matrix:client:device:",
            "urn:matrix:client:api:* urn:matrix:client:device:A email",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.client_body()["oauth_error"], "invalid_scope", "{bad:?}");
            assert_eq!(err.status(), 400);
        }
    }
}
