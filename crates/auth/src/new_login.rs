//! [`NewLogin`]: what a login asks of the device and the token it is issued, shared by the
//! login paths, the device records and their SQL.

use std::time::Duration;

/// A login to issue a token for: the device (a new one when `device_id` is `None`), the
/// name a new device gets, and where the request came from (a new device's first last-seen
/// record, so a device is never listed without one).
#[derive(Debug, Clone, Default)]
pub struct NewLogin {
    pub device_id: Option<String>,
    pub display_name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The access token expires after this and comes with a refresh token (the client asked
    /// for one and a lifetime is configured); `None`: it never expires.
    pub token_lifetime: Option<Duration>,
}
