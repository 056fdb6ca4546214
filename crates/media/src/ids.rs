//! Media IDs and `mxc://` URIs.

use trellis_core::ids::random_string;

/// Length of the media IDs we hand out: 32 alphanumerics are about 190 bits, unguessable.
pub(crate) const MEDIA_ID_LEN: usize = 32;

/// A fresh random media ID.
pub(crate) fn new_media_id() -> String {
    random_string(MEDIA_ID_LEN)
}

/// Whether `id` has the shape of a media ID (`[A-Za-z0-9_-]+`). Anything else is refused
/// before it gets near a query; file paths never derive from it anyway.
pub(crate) fn is_valid_media_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `mxc://<server_name>/<media_id>`.
pub(crate) fn mxc_uri(server_name: &str, media_id: &str) -> String {
    format!("mxc://{server_name}/{media_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_id_shape() {
        for ok in ["abcXYZ019", "a_b-c", "-", "Z"] {
            assert!(is_valid_media_id(ok), "{ok:?}");
        }
        for bad in ["", "../x", "a/b", "a b", "a.b", "a\\b", "é", "a%2Fb", "a\0b"] {
            assert!(!is_valid_media_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn new_ids_are_valid_and_distinct() {
        let a = new_media_id();
        assert_eq!(a.len(), MEDIA_ID_LEN);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(is_valid_media_id(&a));
        assert_ne!(a, new_media_id());
    }

    #[test]
    fn mxc_format() {
        assert_eq!(mxc_uri("example.org", "abc"), "mxc://example.org/abc");
        assert_eq!(mxc_uri("localhost:8448", "x_y"), "mxc://localhost:8448/x_y");
    }
}
