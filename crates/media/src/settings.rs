//! The media service's settings, taken from the shared configuration and checked once.

use std::{path::PathBuf, time::Duration};

use trellis_core::{
    Error, Result,
    config::{Config, MediaConfig},
};

use crate::preview::IpFilter;

/// What the media service needs to know.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Our server name: the authority part of every `mxc://` URI we hand out.
    pub server_name: String,
    /// Root directory of the local blob store and of the upload spool.
    pub path: PathBuf,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    pub store: StoreSettings,
    /// Total bytes one user may upload.
    pub max_user_bytes: Option<u64>,
    /// Reserved-but-unused URIs one user may hold.
    pub max_pending_uploads: u32,
    /// Lifetime of a reserved URI.
    pub unused_expiry: Duration,
    /// What the unauthenticated legacy endpoints may serve.
    pub legacy: LegacyAccess,
    /// Images above this many pixels are never decoded.
    pub max_image_pixels: u64,
    /// `None`: URL previews are off.
    pub preview: Option<PreviewSettings>,
}

/// Where blobs are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// Under [`MediaSettings::path`].
    Local,
    S3(S3Settings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub prefix: Option<String>,
    pub allow_http: bool,
    /// Credentials; unset, they come from the `AWS_*` environment (or the instance's role).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// Which media the deprecated unauthenticated endpoints serve (Synapse's
/// `enable_authenticated_media`, with the freeze date made explicit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyAccess {
    /// Every file: authenticated media is not enforced.
    All,
    /// Files uploaded before this time (ms since the epoch), as the spec's "freeze" asks.
    Before(i64),
    /// Nothing.
    Nothing,
}

impl LegacyAccess {
    /// Whether an unauthenticated request may fetch a file created at `created_ts`.
    pub fn allows(self, created_ts: i64) -> bool {
        match self {
            LegacyAccess::All => true,
            LegacyAccess::Before(cutover) => created_ts < cutover,
            LegacyAccess::Nothing => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PreviewSettings {
    pub ip_filter: IpFilter,
    pub max_bytes: u64,
    pub timeout: Duration,
    pub cache_for: Duration,
}

impl MediaSettings {
    /// The defaults of `[media]` for `server_name`, with the store at `path`.
    pub fn new(server_name: &str, path: impl Into<PathBuf>, max_upload_bytes: u64) -> MediaSettings {
        let media = MediaConfig { path: path.into(), max_upload_bytes, ..MediaConfig::default() };
        MediaSettings::from_media_config(server_name, &media).expect("the defaults are valid")
    }

    pub fn from_config(config: &Config) -> Result<MediaSettings> {
        MediaSettings::from_media_config(&config.server_name, &config.media)
    }

    fn from_media_config(server_name: &str, m: &MediaConfig) -> Result<MediaSettings> {
        let store = match m.store.as_str() {
            "local" => StoreSettings::Local,
            "s3" => StoreSettings::S3(S3Settings {
                bucket: m
                    .s3_bucket
                    .clone()
                    .ok_or_else(|| Error::internal("media.store = \"s3\" needs media.s3_bucket"))?,
                region: m.s3_region.clone(),
                endpoint: m.s3_endpoint.clone(),
                prefix: m.s3_prefix.clone().filter(|p| !p.is_empty()),
                allow_http: m.s3_allow_http,
                access_key_id: None,
                secret_access_key: None,
            }),
            other => return Err(Error::internal(format!("media.store must be \"local\" or \"s3\", not {other:?}"))),
        };
        let legacy = match (m.enable_authenticated_media, m.legacy_media_before_ms) {
            (false, _) => LegacyAccess::All,
            (true, Some(cutover)) => LegacyAccess::Before(cutover),
            (true, None) => LegacyAccess::Nothing,
        };
        let preview = if m.url_preview_enabled {
            Some(PreviewSettings {
                ip_filter: IpFilter::new(&m.url_preview_ip_blacklist, &m.url_preview_ip_whitelist)?,
                max_bytes: m.url_preview_max_bytes,
                timeout: Duration::from_millis(m.url_preview_timeout_ms),
                cache_for: Duration::from_millis(m.url_preview_cache_ms),
            })
        } else {
            None
        };
        Ok(MediaSettings {
            server_name: server_name.to_owned(),
            path: m.path.clone(),
            max_upload_bytes: m.max_upload_bytes,
            store,
            max_user_bytes: m.max_user_bytes,
            max_pending_uploads: m.max_pending_uploads,
            unused_expiry: Duration::from_millis(m.unused_expiry_ms),
            legacy,
            max_image_pixels: m.max_image_pixels,
            preview,
        })
    }

    /// Previews on, with this filter and the default limits.
    pub fn with_preview(mut self, ip_filter: IpFilter) -> MediaSettings {
        let d = MediaConfig::default();
        self.preview = Some(PreviewSettings {
            ip_filter,
            max_bytes: d.url_preview_max_bytes,
            timeout: Duration::from_millis(d.url_preview_timeout_ms),
            cache_for: Duration::from_millis(d.url_preview_cache_ms),
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_from_config() {
        let mut config = Config { server_name: "example.org".into(), ..Config::default() };
        config.media.path = "/srv/media".into();
        config.media.max_upload_bytes = 1234;
        let s = MediaSettings::from_config(&config).unwrap();
        assert_eq!(s.server_name, "example.org");
        assert_eq!(s.path, PathBuf::from("/srv/media"));
        assert_eq!(s.max_upload_bytes, 1234);
        assert_eq!(s.store, StoreSettings::Local);
        assert_eq!(s.legacy, LegacyAccess::Nothing, "authenticated media is enforced by default");
        assert!(s.preview.is_none(), "previews are off by default");
        assert_eq!(s.unused_expiry, Duration::from_secs(86_400));
    }

    #[test]
    fn s3_store_and_legacy_switch() {
        let mut config = Config::default();
        config.media.store = "s3".into();
        assert!(MediaSettings::from_config(&config).is_err(), "a bucket is required");
        config.media.s3_bucket = Some("media".into());
        config.media.s3_endpoint = Some("http://127.0.0.1:9000".into());
        config.media.s3_allow_http = true;
        config.media.s3_prefix = Some(String::new());
        let s = MediaSettings::from_config(&config).unwrap();
        let StoreSettings::S3(s3) = s.store else { panic!("s3 expected") };
        assert_eq!(s3.bucket, "media");
        assert_eq!(s3.prefix, None);
        assert!(s3.allow_http);

        config.media.store = "ftp".into();
        assert!(MediaSettings::from_config(&config).is_err());
        config.media.store = "local".into();

        config.media.legacy_media_before_ms = Some(1000);
        assert_eq!(MediaSettings::from_config(&config).unwrap().legacy, LegacyAccess::Before(1000));
        config.media.enable_authenticated_media = false;
        assert_eq!(MediaSettings::from_config(&config).unwrap().legacy, LegacyAccess::All);
    }

    #[test]
    fn legacy_rules() {
        assert!(LegacyAccess::All.allows(i64::MAX));
        assert!(LegacyAccess::Before(10).allows(9));
        assert!(!LegacyAccess::Before(10).allows(10));
        assert!(!LegacyAccess::Nothing.allows(0));
    }

    #[test]
    fn preview_settings() {
        let mut config = Config::default();
        config.media.url_preview_enabled = true;
        let s = MediaSettings::from_config(&config).unwrap();
        let p = s.preview.unwrap();
        assert!(p.ip_filter.blocks("127.0.0.1".parse().unwrap()));
        config.media.url_preview_ip_blacklist = vec!["not a range".into()];
        assert!(MediaSettings::from_config(&config).is_err());
    }
}
