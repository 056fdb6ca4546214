//! Uploads: `POST /upload` (a new media ID) and `PUT /upload/{server}/{id}` (the content of
//! an ID reserved by `POST /create`). A body is spooled while hashed, checked against the
//! size limit and the uploader's quota, stored once per content, and recorded together with
//! the quota and the end of the reservation in one transaction.
//! <https://spec.matrix.org/v1.16/client-server-api/#post_matrixmediav1create>

use std::sync::Arc;

use tracing::field::Empty;
use trellis_core::{Error, ErrorCode, Result, time::now_ms};
use trellis_proto::media::{ByteStream, CreateRequest, CreateResponse, UploadMeta, UploadResponse};

use crate::{
    db::{self, media::NewMedia},
    ids::{is_valid_media_id, mxc_uri, new_media_id},
    inner::Inner,
    spool::{Spooled, spool, too_large},
    thumbnail,
};

/// Content type recorded when the uploader gives none.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

pub(crate) fn quota_exceeded() -> Error {
    Error::forbidden("Media upload quota exceeded")
}

impl Inner {
    #[tracing::instrument(skip_all, fields(
        user_id = %meta.user_id,
        declared_length = meta.declared_length,
        media_id = Empty,
        size = Empty,
    ))]
    pub(crate) async fn upload(self: &Arc<Self>, meta: UploadMeta, body: ByteStream) -> Result<UploadResponse> {
        let result = self.upload_inner(meta, body).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.is_internal() => "internal",
            Err(e) => e.code().as_str(),
        };
        metrics::counter!("trellis_media_uploads_total", "outcome" => outcome).increment(1);
        result
    }

    async fn upload_inner(self: &Arc<Self>, meta: UploadMeta, body: ByteStream) -> Result<UploadResponse> {
        let limit = self.settings.max_upload_bytes;
        if meta.declared_length.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        // Everything that can be refused without the body is refused before reading it.
        let reserved = self.check_reservation(&meta).await?;
        let usage = db::media::usage(&self.pool, &meta.user_id).await?;
        if let Some(quota) = self.settings.max_user_bytes
            && usage.saturating_add(meta.declared_length.unwrap_or(0)) > quota
        {
            return Err(quota_exceeded());
        }

        let spooled = spool(self.store.spool_dir(), body, limit, meta.declared_length).await?;
        if let Some(quota) = self.settings.max_user_bytes
            && usage.saturating_add(spooled.size) > quota
        {
            spooled.file.remove().await;
            return Err(quota_exceeded());
        }
        let content_type = if meta.content_type.is_empty() { DEFAULT_CONTENT_TYPE } else { &meta.content_type };
        let dimensions = if content_type.starts_with("image/") {
            thumbnail::probe_file(spooled.file.path().to_owned()).await
        } else {
            None
        };
        let (sha256, size) = (spooled.sha256.clone(), spooled.size);
        // The blob is held from here until the row naming it is committed (`db::blob_lock`).
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        db::blob_lock::share(&tx, &sha256).await?;
        self.store_blob(spooled).await?;

        let media_id = reserved.clone().unwrap_or_else(new_media_id);
        let row = NewMedia {
            media_id: &media_id,
            content_type,
            upload_name: meta.filename.as_deref().filter(|f| !f.is_empty()),
            size,
            sha256: &sha256,
            user_id: &meta.user_id,
            created_ts: now_ms(),
            url_cache: None,
            dimensions,
        };
        // A blob stored just now stays behind if this fails: harmless, and shared blobs
        // could not be removed safely anyway.
        self.record(&tx, &row, reserved.is_some()).await?;
        tx.commit().await?;
        drop(client);
        if reserved.is_some() {
            self.uploaded.notify_waiters();
        }

        let span = tracing::Span::current();
        span.record("media_id", media_id.as_str());
        span.record("size", size);
        metrics::counter!("trellis_media_uploaded_bytes_total").increment(size);
        tracing::info!(%sha256, "media uploaded");
        if let Some(dims) = dimensions {
            thumbnail::pregenerate(self.clone(), media_id.clone(), sha256, dims).await;
        }
        Ok(UploadResponse { content_uri: mxc_uri(&self.settings.server_name, &media_id) })
    }

    /// For a `PUT` to a reserved URI: the media ID, once it is known to be the caller's,
    /// unexpired and still empty.
    async fn check_reservation(&self, meta: &UploadMeta) -> Result<Option<String>> {
        let (server_name, media_id) = match (&meta.server_name, &meta.media_id) {
            (None, None) => return Ok(None),
            (Some(s), Some(m)) => (s, m),
            _ => return Err(Error::invalid_param("server name and media ID go together")),
        };
        if *server_name != self.settings.server_name || !is_valid_media_id(media_id) {
            return Err(Error::not_found("Unknown media ID"));
        }
        match db::pending::get(&self.pool, media_id).await? {
            Some(p) if p.user_id != meta.user_id => Err(Error::forbidden("This media ID was created by another user")),
            Some(p) if p.expires_ts <= now_ms() => Err(Error::not_found("This media ID has expired")),
            Some(_) => Ok(Some(media_id.clone())),
            None if db::media::get(&self.pool, media_id).await?.is_some() => Err(cannot_overwrite()),
            None => Err(Error::not_found("Unknown media ID")),
        }
    }

    /// Moves a spooled upload into the store, unless identical content is there already.
    async fn store_blob(&self, spooled: Spooled) -> Result<()> {
        let stored = async {
            let existed = self.store.exists(&spooled.sha256).await?;
            if !existed {
                self.store.put(&spooled.sha256, spooled.file.path()).await?;
            }
            Ok::<_, Error>(existed)
        }
        .await;
        match stored {
            Ok(true) => spooled.file.remove().await,
            Ok(false) => spooled.file.kept(),
            Err(e) => {
                spooled.file.remove().await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// The row, the quota and the end of the reservation, all or nothing.
    async fn record(&self, tx: &deadpool_postgres::Transaction<'_>, row: &NewMedia<'_>, reserved: bool) -> Result<()> {
        if !db::media::add_usage(tx, row.user_id, row.size, self.settings.max_user_bytes).await? {
            return Err(quota_exceeded());
        }
        if !db::media::insert(tx, row).await? {
            // Only a reserved ID can collide: another upload filled it first.
            return Err(cannot_overwrite());
        }
        if reserved {
            db::pending::remove(tx, row.media_id).await?;
        }
        Ok(())
    }

    /// `POST /_matrix/media/v1/create`.
    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub(crate) async fn create(&self, req: CreateRequest) -> Result<CreateResponse> {
        let now = now_ms();
        let expiry = i64::try_from(self.settings.unused_expiry.as_millis()).unwrap_or(i64::MAX);
        let expires = now.saturating_add(expiry);
        let media_id = new_media_id();
        let max = self.settings.max_pending_uploads;
        if !db::pending::insert(&self.pool, &media_id, &req.user_id, now, expires, max).await? {
            return Err(Error::new(ErrorCode::LimitExceeded, "Too many pending media uploads")
                .with_field("retry_after_ms", 60_000));
        }
        Ok(CreateResponse { content_uri: mxc_uri(&self.settings.server_name, &media_id), unused_expires_at: expires })
    }
}

fn cannot_overwrite() -> Error {
    Error::new(ErrorCode::CannotOverwriteMedia, "Media ID already has content")
}
