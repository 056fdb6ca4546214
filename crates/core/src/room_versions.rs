//! The room versions this server creates and serves (advertised in `/capabilities`).

/// The version of new rooms unless the client asks for another.
pub const DEFAULT: &str = "11";

/// Every version rooms can be created in.
pub const SUPPORTED: &[&str] = &["10", "11"];
