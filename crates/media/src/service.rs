//! [`Media`], the media service: the state every operation shares, the background sweep of
//! expired reservations, and the [`MediaService`] implementation, which hands each call to
//! the module owning its rules (`upload`, `download`, `thumbnail`, `preview`).

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use deadpool_postgres::Pool;
use tokio::sync::{Notify, Semaphore};
use trellis_core::{Error, Result, config::Config};
use trellis_proto::media::{
    AdminDeleteMediaRequest, AdminDeletedMedia, AdminListMediaRequest, AdminMediaCount, AdminMediaList,
    AdminProtectMediaRequest, AdminQuarantineRequest, ByteStream, ConfigRequest, ConfigResponse, CreateRequest,
    CreateResponse, Download, DownloadRequest, MediaService, PreviewUrlRequest, PreviewUrlResponse, ThumbnailRequest,
    UploadMeta, UploadResponse,
};

use crate::{
    db,
    inner::Inner,
    locks::KeyedLocks,
    preview::Previewer,
    settings::{MediaSettings, StoreSettings},
    store::{BlobStore, LocalBlobStore, ObjectBlobStore},
};

/// How often expired reservations are swept away (they are refused as soon as they expire
/// either way; the sweep only keeps the table small).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Image decodes running at once: each may hold up to `max_image_pixels` × 4 bytes.
const IMAGE_JOBS: usize = 2;

/// The media service over a [`BlobStore`] and the media tables.
pub struct Media {
    inner: Arc<Inner>,
    /// The preview machinery, present only when previews are on.
    previewer: Option<Previewer>,
}

impl Media {
    /// The media service over the store `settings.store` names (created if missing).
    pub async fn new(pool: Pool, settings: MediaSettings) -> Result<Media> {
        let store: Arc<dyn BlobStore> = match &settings.store {
            StoreSettings::Local => Arc::new(LocalBlobStore::open(&settings.path).await?),
            StoreSettings::S3(s3) => Arc::new(s3_store(s3, &settings).await?),
        };
        Media::with_store(pool, settings, store)
    }

    /// The media service as configured: our server name and `[media]`.
    pub async fn from_config(pool: Pool, config: &Config) -> Result<Media> {
        Media::new(pool, MediaSettings::from_config(config)?).await
    }

    /// The media service over any blob store (`settings.store` is then unused). Must be
    /// called within a Tokio runtime: it starts the sweep of expired reservations.
    pub fn with_store(pool: Pool, settings: MediaSettings, store: Arc<dyn BlobStore>) -> Result<Media> {
        let previewer = settings.preview.clone().map(Previewer::new).transpose()?;
        let inner = Arc::new(Inner {
            pool,
            settings,
            store,
            uploaded: Notify::new(),
            thumb_locks: KeyedLocks::default(),
            image_jobs: Semaphore::new(IMAGE_JOBS),
        });
        tokio::spawn(sweep(Arc::downgrade(&inner)));
        Ok(Media { inner, previewer })
    }

    pub fn settings(&self) -> &MediaSettings {
        &self.inner.settings
    }

    /// How many thumbnails of `media_id` are stored.
    pub async fn thumbnail_count(&self, media_id: &str) -> Result<i64> {
        db::thumbnails::count(&self.inner.pool, media_id).await
    }

    /// Waits until no thumbnail is being generated for `media_id` (after an upload, its
    /// common sizes are made in the background).
    pub async fn thumbnails_settled(&self, media_id: &str) {
        drop(self.inner.thumb_locks.lock(media_id).await);
    }
}

#[cfg(feature = "s3")]
async fn s3_store(s3: &crate::settings::S3Settings, settings: &MediaSettings) -> Result<ObjectBlobStore> {
    ObjectBlobStore::s3(s3, settings.path.join("tmp")).await
}

#[cfg(not(feature = "s3"))]
async fn s3_store(_: &crate::settings::S3Settings, _: &MediaSettings) -> Result<ObjectBlobStore> {
    Err(trellis_core::Error::internal("media.store = \"s3\" needs Trellis built with the `s3` feature"))
}

/// Drops expired reservations until the service is gone.
async fn sweep(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        match db::pending::expire(&inner.pool, trellis_core::time::now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "unused media IDs expired"),
            Err(e) => tracing::warn!(error = %e, "sweeping unused media IDs failed"),
        }
    }
}

#[async_trait::async_trait]
impl MediaService for Media {
    async fn upload(&self, meta: UploadMeta, body: ByteStream) -> Result<UploadResponse> {
        self.inner.upload(meta, body).await
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse> {
        self.inner.create(req).await
    }

    async fn download(&self, req: DownloadRequest) -> Result<Download> {
        self.inner.download(req).await
    }

    async fn thumbnail(&self, req: ThumbnailRequest) -> Result<Download> {
        Inner::thumbnail(&self.inner, req).await
    }

    async fn preview_url(&self, req: PreviewUrlRequest) -> Result<PreviewUrlResponse> {
        match &self.previewer {
            Some(previewer) => previewer.preview_url(&self.inner, req).await,
            None => Err(Error::unrecognized("URL previews are disabled on this server")),
        }
    }

    async fn config(&self, _: ConfigRequest) -> Result<ConfigResponse> {
        Ok(ConfigResponse { upload_size: Some(self.inner.settings.max_upload_bytes) })
    }

    async fn admin_quarantine(&self, req: AdminQuarantineRequest) -> Result<AdminMediaCount> {
        self.inner.admin_quarantine(req).await
    }

    async fn admin_protect_media(&self, req: AdminProtectMediaRequest) -> Result<AdminMediaCount> {
        self.inner.admin_protect_media(req).await
    }

    async fn admin_delete_media(&self, req: AdminDeleteMediaRequest) -> Result<AdminDeletedMedia> {
        self.inner.admin_delete_media(req).await
    }

    async fn admin_list_media(&self, req: AdminListMediaRequest) -> Result<AdminMediaList> {
        self.inner.admin_list_media(req).await
    }
}
