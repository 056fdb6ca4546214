//! The media service contract. Unlike the other services its bodies stream: uploads and
//! downloads move in chunks through the trait and over gRPC, so memory stays flat whatever
//! the file size. `service!` generates the unary methods; the three streaming ones are
//! written out below, and served through the same [`crate::server::unary`] path (spans,
//! metrics, errcodes) as every other call.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use trellis_core::{Error, Result};

pub use crate::pb::media::*;

/// A body in chunks. An `Err` item aborts the transfer: nothing partial is ever stored.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A file on its way out: what it is, then its bytes.
pub struct Download {
    pub meta: DownloadMeta,
    pub body: ByteStream,
}

service! {
    /// The media repository.
    pub trait MediaService as "media" {
        /// Reserves an `mxc://` URI for an asynchronous upload.
        fn create(CreateRequest) -> CreateResponse;
        /// The OpenGraph preview of a URL (`M_UNRECOGNIZED` when previews are off).
        fn preview_url(PreviewUrlRequest) -> PreviewUrlResponse;
        /// What clients may know of the repository's limits.
        fn config(ConfigRequest) -> ConfigResponse;
        /// Quarantines (or releases) local media: downloads and thumbnails of it are answered
        /// `M_NOT_FOUND`. `M_NOT_FOUND` for a named media ID this server does not have.
        fn admin_quarantine(AdminQuarantineRequest) -> AdminMediaCount;
        /// Protects local media from every quarantine (or lifts it); `M_NOT_FOUND` for media
        /// this server does not have.
        fn admin_protect_media(AdminProtectMediaRequest) -> AdminMediaCount;
        /// Deletes local media, its thumbnails and the blobs nothing else names.
        fn admin_delete_media(AdminDeleteMediaRequest) -> AdminDeletedMedia;
        /// A page of a user's media (`M_INVALID_PARAM` for a bad page or order).
        fn admin_list_media(AdminListMediaRequest) -> AdminMediaList;
        streaming {
            /// Stores a body and returns its `mxc://` URI; `M_TOO_LARGE` past the size limit. With
            /// `meta.media_id` set, fills a URI reserved by [`MediaService::create`] instead.
            async fn upload(&self, meta: UploadMeta, body: ByteStream) -> Result<UploadResponse>;
            /// Streams a stored file (or a range of it); `M_NOT_FOUND` if there is none,
            /// `M_NOT_YET_UPLOADED` if its asynchronous upload has not arrived in time.
            async fn download(&self, req: DownloadRequest) -> Result<Download>;
            /// Streams a thumbnail of a stored image.
            async fn thumbnail(&self, req: ThumbnailRequest) -> Result<Download>;
        }
    }
    client MediaGrpcClient = media_client::MediaClient<tonic::transport::Channel> {
        async fn upload(&self, meta: UploadMeta, body: ByteStream) -> Result<UploadResponse> {
            // A failing body must abort the call rather than end the request stream cleanly
            // (which the server would take for a complete upload): the error leaves out of
            // band, the stream never ends, and dropping the call resets the HTTP/2 stream.
            let (err_tx, err_rx) = tokio::sync::oneshot::channel::<Error>();
            let state = UploadState { meta: Some(meta), body, err_tx: Some(err_tx) };
            let outgoing = stream::unfold(state, upload_step);
            let mut client = self.inner.clone();
            tokio::select! {
                res = client.upload(request(outgoing)) => {
                    res.map(tonic::Response::into_inner).map_err(crate::status::to_error)
                }
                Ok(e) = err_rx => Err(e),
            }
        }

        async fn download(&self, req: DownloadRequest) -> Result<Download> {
            let mut client = self.inner.clone();
            incoming_download(client.download(request(req)).await).await
        }

        async fn thumbnail(&self, req: ThumbnailRequest) -> Result<Download> {
            let mut client = self.inner.clone();
            incoming_download(client.thumbnail(request(req)).await).await
        }
    };
    server MediaGrpcServer = media_server::{MediaServer, Media} {
        async fn upload(
            &self,
            request: tonic::Request<tonic::Streaming<UploadChunk>>,
        ) -> Result<tonic::Response<UploadResponse>, tonic::Status> {
            crate::server::unary("media", "upload", request, |incoming| async move {
                let (meta, body) = incoming_upload(incoming).await?;
                self.inner.upload(meta, body).await
            })
            .await
        }

        type DownloadStream = DownloadStream;

        async fn download(
            &self,
            request: tonic::Request<DownloadRequest>,
        ) -> Result<tonic::Response<DownloadStream>, tonic::Status> {
            crate::server::unary("media", "download", request, |req| async move {
                self.inner.download(req).await.map(outgoing_download)
            })
            .await
        }

        type ThumbnailStream = DownloadStream;

        async fn thumbnail(
            &self,
            request: tonic::Request<ThumbnailRequest>,
        ) -> Result<tonic::Response<DownloadStream>, tonic::Status> {
            crate::server::unary("media", "thumbnail", request, |req| async move {
                self.inner.thumbnail(req).await.map(outgoing_download)
            })
            .await
        }
    };
}

/// A request carrying the caller's trace context.
fn request<T>(msg: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(msg);
    crate::trace::inject(request.metadata_mut());
    request
}

/// A download stream as it arrives: its metadata first, then the bytes.
async fn incoming_download(
    response: Result<tonic::Response<tonic::Streaming<DownloadChunk>>, tonic::Status>,
) -> Result<Download> {
    let mut incoming = response.map_err(crate::status::to_error)?.into_inner();
    let meta = match incoming.message().await.map_err(crate::status::to_error)? {
        Some(DownloadChunk { part: Some(download_chunk::Part::Meta(meta)) }) => meta,
        _ => return Err(Error::internal("media download did not start with its metadata")),
    };
    let body = incoming.map(|chunk| match chunk {
        Ok(DownloadChunk { part: Some(download_chunk::Part::Data(d)) }) => Ok(d),
        Ok(_) => Err(Error::internal("unexpected message in media download")),
        Err(status) => Err(crate::status::to_error(status)),
    });
    Ok(Download { meta, body: Box::pin(body) })
}

struct UploadState {
    meta: Option<UploadMeta>,
    body: ByteStream,
    err_tx: Option<tokio::sync::oneshot::Sender<Error>>,
}

/// One message of an outgoing upload: the metadata, then each chunk; a body error is handed
/// to the caller and the stream then stays open forever so it cannot end cleanly.
async fn upload_step(mut st: UploadState) -> Option<(UploadChunk, UploadState)> {
    if let Some(meta) = st.meta.take() {
        return Some((UploadChunk { part: Some(upload_chunk::Part::Meta(meta)) }, st));
    }
    match st.body.next().await {
        Some(Ok(data)) => Some((UploadChunk { part: Some(upload_chunk::Part::Data(data)) }, st)),
        None => None,
        Some(Err(e)) => {
            if let Some(tx) = st.err_tx.take() {
                let _ = tx.send(e);
            }
            std::future::pending::<()>().await;
            None
        }
    }
}

/// An upload as it arrives: its metadata first, then the bytes. A broken stream fails the
/// body, so nothing partial is stored.
async fn incoming_upload(mut incoming: tonic::Streaming<UploadChunk>) -> Result<(UploadMeta, ByteStream)> {
    let meta = match incoming.message().await {
        Ok(Some(UploadChunk { part: Some(upload_chunk::Part::Meta(meta)) })) => meta,
        Ok(_) => return Err(Error::internal("media upload did not start with its metadata")),
        Err(status) => return Err(Error::internal(format!("upload stream broke: {status}"))),
    };
    let body = incoming.map(|chunk| match chunk {
        Ok(UploadChunk { part: Some(upload_chunk::Part::Data(d)) }) => Ok(d),
        Ok(_) => Err(Error::internal("unexpected message in media upload")),
        Err(status) => Err(Error::internal(format!("upload stream broke: {status}"))),
    });
    Ok((meta, Box::pin(body)))
}

type DownloadStream = Pin<Box<dyn Stream<Item = Result<DownloadChunk, tonic::Status>> + Send>>;

/// A download on its way out: its metadata first, then the bytes.
fn outgoing_download(download: Download) -> DownloadStream {
    let Download { meta, body } = download;
    let first = DownloadChunk { part: Some(download_chunk::Part::Meta(meta)) };
    let rest = body.map(|item| match item {
        Ok(data) => Ok(DownloadChunk { part: Some(download_chunk::Part::Data(data)) }),
        Err(e) => Err(crate::status::from_error(e)),
    });
    Box::pin(stream::once(async { Ok(first) }).chain(rest))
}
