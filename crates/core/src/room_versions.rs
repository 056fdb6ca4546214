//! The room versions this server creates and serves (advertised in `/capabilities`).

/// The version of new rooms unless the client asks for another: Synapse's default (11 since
/// MSC4239).
pub const DEFAULT: &str = "11";

/// Every version rooms can be created in: all stable versions of the spec.
pub const SUPPORTED: &[&str] = &["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];
